//! `s3://` downloads by the real binary against real S3 servers on 127.0.0.1: s3s-fs where
//! signatures must be right, s3rver for speed, anonymous access and TLS (support::s3). A
//! small fake speaks S3 only where no real server can be made to misbehave (hostile keys).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::support::replay::Replay;
use crate::support::s3::{ACCESS_KEY, S3rver, S3sFs, SECRET_KEY, StubObject, StubS3};
use crate::support::server::{Server, read_form};
use crate::support::{Run, TempDir, bytes, closed_port, files, run_env, tls, tree};

/// Credentials and signatures never reach the output.
fn assert_no_secrets(out: &Run) {
    let all = format!("{}{}", out.stdout, out.stderr);
    for secret in [
        SECRET_KEY,
        ACCESS_KEY,
        "X-Amz-Signature",
        "X-Amz-Credential",
    ] {
        assert!(!all.contains(secret), "{secret} shown: {out:#?}");
    }
}

#[test]
fn signed_prefix_download_takes_the_folder_and_never_its_siblings() {
    let s3 = S3sFs::start();
    s3.put("models", "iris/v1/config.json", b"{\"n\":1}")
        .put("models", "iris/v1/weights/part 1.bin", &bytes(300_000, 1))
        .put("models", "iris/v1/c++ & 50%.txt", b"odd name")
        .put("models", "iris/v1/empty", b"")
        .put("models", "iris/v10/sibling", b"no")
        .put("models", "iris/v1.bak", b"no")
        .put("models", "my model+x/w.bin", b"spaced");
    let tmp = TempDir::new("s3-signed");
    let dest = tmp.path().join("dest");
    // At debug level ureq logs every request: still no key, signature or credential.
    let mut env = s3.env();
    env.push(("RUST_LOG", "debug".into()));
    let out = run_env(&["s3://models/iris/v1", dest.to_str().unwrap()], &env);
    out.expect_code(0);
    assert_eq!(
        tree(&dest),
        files(&[
            ("c++ & 50%.txt", b"odd name"),
            ("config.json", b"{\"n\":1}"),
            ("empty", b""),
            ("weights/part 1.bin", &bytes(300_000, 1)),
        ])
    );
    assert!(
        out.stderr.contains("signed with AWS_ACCESS_KEY_ID"),
        "{out:#?}"
    );
    assert_no_secrets(&out);
}

#[test]
fn a_single_object_uri_lands_under_its_basename() {
    let s3 = S3sFs::start();
    s3.put("models", "iris/v1/model.joblib", b"weights").put(
        "models",
        "iris/v1/model.joblib.sig",
        b"no",
    );
    let tmp = TempDir::new("s3-single");
    let dest = tmp.path().join("dest");
    let out = run_env(
        &["s3://models/iris/v1/model.joblib", dest.to_str().unwrap()],
        &s3.env(),
    );
    out.expect_code(0);
    assert_eq!(tree(&dest), files(&[("model.joblib", b"weights")]));
}

#[test]
fn five_thousand_keys_arrive_through_continuation_tokens() {
    let s3 = S3sFs::start();
    for i in 0..5000 {
        s3.put(
            "many",
            &format!("shards/{:02}/k{i:04}", i % 7),
            i.to_string().as_bytes(),
        );
    }
    let tmp = TempDir::new("s3-many");
    let dest = tmp.path().join("dest");
    let mut env = s3.env();
    env.push(("RUST_LOG", "mr_storage_initializer::fetch=debug".into()));
    let out = run_env(&["s3://many/shards/", dest.to_str().unwrap()], &env);
    out.expect_code(0);
    let got = tree(&dest);
    assert_eq!(got.len(), 5000);
    for i in [0, 999, 1000, 1001, 4999] {
        let path = format!("{:02}/k{i:04}", i % 7);
        assert_eq!(got[&path], i.to_string().as_bytes(), "{path}");
    }
    assert!(
        out.stderr
            .contains("listed s3://many/shards/: 5000 object(s) in 5 page(s)"),
        "{out:#?}"
    );
}

#[test]
fn wrong_keys_get_one_line_that_names_the_variables() {
    let s3 = S3sFs::start();
    s3.put("models", "iris/model.bin", b"x");
    let tmp = TempDir::new("s3-wrong");
    let dest = tmp.path().join("dest");
    for (id, secret) in [(ACCESS_KEY, "not-the-secret"), ("AKIAUNKNOWN", SECRET_KEY)] {
        let env = [
            ("AWS_ACCESS_KEY_ID", id.to_string()),
            ("AWS_SECRET_ACCESS_KEY", secret.to_string()),
            ("AWS_ENDPOINT_URL", s3.endpoint()),
        ];
        let out = run_env(&["s3://models/iris", dest.to_str().unwrap()], &env);
        out.expect_code(1);
        let last = out.last_line();
        assert!(
            last.starts_with("error: cannot list s3://models/iris: the S3 server refused the credentials: HTTP 403 Forbidden"),
            "{last}"
        );
        assert!(
            out.stderr
                .contains("hint: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            "{out:#?}"
        );
        assert!(!out.stderr.contains("not-the-secret"), "{out:#?}");
        assert_no_secrets(&out);
        assert!(!dest.exists(), "nothing is written on a failed listing");
    }
}

#[test]
fn access_denied_says_whether_credentials_were_set() {
    let s3 = S3sFs::start();
    s3.put("models", "iris/model.bin", b"x");
    let tmp = TempDir::new("s3-denied");
    let dest = tmp.path().join("dest");
    let out = run_env(
        &["s3://models/iris", dest.to_str().unwrap()],
        &[("AWS_ENDPOINT_URL", s3.endpoint())],
    );
    out.expect_code(1);
    assert!(
        out.last_line()
            .starts_with("error: cannot list s3://models/iris: access denied: HTTP 403 Forbidden"),
        "{out:#?}"
    );
    assert!(
        out.stderr
            .contains("hint: no S3 credentials are set: set AWS_ACCESS_KEY_ID"),
        "{out:#?}"
    );
    let out = run_env(
        &["s3://models/iris", dest.to_str().unwrap()],
        &[
            ("AWS_ENDPOINT_URL", s3.endpoint()),
            ("awsAnonymousCredential", "true".into()),
        ],
    );
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("hint: awsAnonymousCredential=true sends unsigned requests"),
        "{out:#?}"
    );
    assert!(!dest.exists());
}

#[test]
fn a_missing_bucket_or_empty_prefix_is_one_clear_line() {
    let s3 = S3sFs::start();
    s3.put("models", "iris/model.bin", b"x");
    let tmp = TempDir::new("s3-missing");
    let dest = tmp.path().join("dest");
    let out = run_env(&["s3://nobucket/iris", dest.to_str().unwrap()], &s3.env());
    out.expect_code(1);
    assert!(
        out.last_line().starts_with(
            "error: cannot list s3://nobucket/iris: the bucket 'nobucket' does not exist"
        ),
        "{out:#?}"
    );
    assert!(
        out.stderr.contains("hint: check the bucket name"),
        "{out:#?}"
    );

    let out = run_env(&["s3://models/nothing/", dest.to_str().unwrap()], &s3.env());
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        "error: nothing to download: no objects under 's3://models/nothing/'"
    );
    assert!(!dest.exists());
}

#[test]
fn an_unreachable_endpoint_says_which() {
    let port = closed_port();
    let env = [
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("awsAnonymousCredential", "true".into()),
    ];
    let tmp = TempDir::new("s3-unreachable");
    let out = run_env(&["s3://models/iris", tmp.path().to_str().unwrap()], &env);
    out.expect_code(1);
    assert!(
        out.last_line().starts_with(&format!(
            "error: cannot list s3://models/iris: cannot reach the S3 endpoint http://127.0.0.1:{port}: "
        )),
        "{out:#?}"
    );
    assert!(
        out.stderr.contains("hint: check AWS_ENDPOINT_URL"),
        "{out:#?}"
    );
}

#[test]
fn anonymous_and_credential_free_access_send_unsigned_requests() {
    let s3 = S3rver::start();
    s3.bucket("public")
        .put("public", "iris/model.json", b"{}")
        .put("public", "iris/sub/", b"")
        .put("public", "iris/sub/empty", b"");
    let tmp = TempDir::new("s3-anon");
    // awsAnonymousCredential wins over keys, as in KServe; with no credentials at all,
    // requests go unsigned too.
    for (i, anonymous) in [true, false].into_iter().enumerate() {
        let dest = tmp.path().join(format!("dest{i}"));
        let mut env = vec![("AWS_ENDPOINT_URL", s3.endpoint())];
        if anonymous {
            env.push(("awsAnonymousCredential", "true".into()));
            env.push(("AWS_ACCESS_KEY_ID", "ignored".into()));
            env.push(("AWS_SECRET_ACCESS_KEY", "ignored".into()));
        }
        let out = run_env(&["s3://public/iris", dest.to_str().unwrap()], &env);
        out.expect_code(0);
        // The folder marker `sub/` is skipped; the zero-byte object under it is a file.
        assert_eq!(
            tree(&dest),
            files(&[("model.json", b"{}"), ("sub/empty", b"")])
        );
        let said = match anonymous {
            true => "requests unsigned (awsAnonymousCredential)",
            false => "requests unsigned (no credentials set)",
        };
        assert!(out.stderr.contains(said), "{out:#?}");
    }
}

#[test]
fn a_large_object_arrives_byte_exact_in_parallel_ranged_parts() {
    let s3 = S3rver::start();
    let big = bytes(200 << 20, 7);
    s3.bucket("models")
        .put("models", "llm/model.safetensors", &big)
        .put("models", "llm/config.json", b"{}")
        .put("models", "llm-old/model.safetensors", b"sibling");
    let tmp = TempDir::new("s3-large");
    let dest = tmp.path().join("dest");
    let env = [
        ("AWS_ENDPOINT_URL", s3.endpoint()),
        ("RUST_LOG", "mr_storage_initializer::engine=debug".into()),
    ];
    let out = run_env(&["s3://models/llm", dest.to_str().unwrap()], &env);
    out.expect_code(0);
    let got = tree(&dest);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["config.json", "model.safetensors"]
    );
    assert!(got["model.safetensors"] == big, "the large object differs");
    // 200 MiB in 64 MiB parts: 4 ranged GETs, none of them the whole object.
    let parts: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("fetching 'llm/model.safetensors' of 's3://models/llm' bytes "))
        .collect();
    assert_eq!(parts.len(), 4, "{parts:#?}");
    assert!(
        parts
            .iter()
            .any(|l| l.ends_with("bytes 201326592-209715199")),
        "{parts:#?}"
    );
}

#[test]
fn bytes_that_do_not_match_the_etag_fail_and_leave_no_file() {
    let s3 = S3rver::start();
    s3.bucket("models")
        .put("models", "iris/model.bin", &bytes(100_000, 3));
    // s3rver keeps the MD5 (the ETag) apart from the bytes: change a byte behind its back.
    let object = s3.object_file("models", "iris/model.bin");
    let mut tampered = std::fs::read(&object).unwrap();
    tampered[50_000] ^= 0xff;
    std::fs::write(&object, tampered).unwrap();
    let tmp = TempDir::new("s3-etag");
    let dest = tmp.path().join("dest");
    let env = [("AWS_ENDPOINT_URL", s3.endpoint())];
    let out = run_env(&["s3://models/iris/", dest.to_str().unwrap()], &env);
    out.expect_code(1);
    let last = out.last_line();
    assert!(
        last.starts_with("error: cannot download s3://models/iris/model.bin: the bytes' MD5 is "),
        "{last}"
    );
    assert!(
        !dest.join("model.bin").exists(),
        "no file under its final name"
    );
}

#[test]
fn tls_endpoints_trust_aws_ca_bundle_alone_or_skip_checks() {
    let tmp = TempDir::new("s3-tls");
    let certs = tls::make_certs(tmp.path());
    let other_dir = tmp.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = tls::make_certs(&other_dir);
    let s3 = S3rver::start_tls(&certs);
    s3.bucket("models").put("models", "iris/model.json", b"{}");
    let ca = certs.ca.to_str().unwrap().to_string();
    let uri = "s3://models/iris";
    let base = vec![
        ("AWS_ENDPOINT_URL", s3.endpoint()),
        ("awsAnonymousCredential", "true".into()),
    ];
    let with = |extra: &[(&'static str, String)]| {
        let mut env = base.clone();
        env.extend_from_slice(extra);
        env
    };

    let dest = tmp.path().join("ok");
    let out = run_env(
        &[uri, dest.to_str().unwrap()],
        &with(&[("AWS_CA_BUNDLE", ca.clone())]),
    );
    out.expect_code(0);
    assert_eq!(tree(&dest), files(&[("model.json", b"{}")]));

    let dest = tmp.path().join("unverified");
    let out = run_env(
        &[uri, dest.to_str().unwrap()],
        &with(&[("S3_VERIFY_SSL", "0".into())]),
    );
    out.expect_code(0);
    assert_eq!(tree(&dest), files(&[("model.json", b"{}")]));
    assert!(out.stderr.contains("S3_VERIFY_SSL is off"), "{out:#?}");

    // AWS_CA_BUNDLE replaces the trust store: SSL_CERT_FILE trusting the CA does not help.
    let dest = tmp.path().join("replaced");
    let out = run_env(
        &[uri, dest.to_str().unwrap()],
        &with(&[
            ("AWS_CA_BUNDLE", other.ca.to_str().unwrap().into()),
            ("SSL_CERT_FILE", ca),
        ]),
    );
    out.expect_code(1);
    assert!(
        out.last_line().starts_with(
            "error: cannot list s3://models/iris: TLS with the S3 endpoint https://127.0.0.1:"
        ),
        "{out:#?}"
    );
    assert!(
        out.stderr
            .contains("hint: trust the endpoint's CA with AWS_CA_BUNDLE"),
        "{out:#?}"
    );
    assert!(!dest.exists());

    let dest = tmp.path().join("untrusted");
    let out = run_env(&[uri, dest.to_str().unwrap()], &base);
    out.expect_code(1);
    assert!(
        out.last_line().contains("TLS with the S3 endpoint"),
        "{out:#?}"
    );
}

/// A local STS: answers AssumeRoleWithWebIdentity with the s3s-fs keys (or refuses), and
/// keeps every form it was sent.
struct Sts {
    server: Server,
    forms: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

impl Sts {
    fn start(refuse: bool) -> Sts {
        let forms = Arc::new(Mutex::new(Vec::new()));
        let seen = forms.clone();
        let server = Server::start("127.0.0.1:0", move |stream| {
            let Some(form) = read_form(&stream) else {
                return;
            };
            seen.lock().unwrap().push(form);
            let (status, body) = if refuse {
                ("403 Forbidden", "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>Token audience mismatch</Message></Error></ErrorResponse>".to_string())
            } else {
                (
                    "200 OK",
                    format!(
                        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
                     <AccessKeyId>{ACCESS_KEY}</AccessKeyId><SecretAccessKey>{SECRET_KEY}</SecretAccessKey>\
                     <SessionToken>mrsi-session-token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>\
                     </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
                    ),
                )
            };
            let _ = write!(
                &stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        });
        Sts { server, forms }
    }

    fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }
}

fn web_identity_env(sts: &Sts, token_file: &Path, s3: &S3sFs) -> Vec<(&'static str, String)> {
    vec![
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/model-reader".into(),
        ),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            token_file.to_str().unwrap().into(),
        ),
        ("AWS_ENDPOINT_URL_STS", sts.url()),
        ("AWS_ENDPOINT_URL", s3.endpoint()),
    ]
}

#[test]
fn web_identity_keys_come_from_sts_and_sign_the_requests() {
    let s3 = S3sFs::start();
    s3.put("models", "iris/model.json", b"{}");
    let sts = Sts::start(false);
    let tmp = TempDir::new("s3-irsa");
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "eyJhbGciOi.mrsi-web-identity.sig\n").unwrap();
    let dest = tmp.path().join("dest");
    let out = run_env(
        &["s3://models/iris", dest.to_str().unwrap()],
        &web_identity_env(&sts, &token_file, &s3),
    );
    out.expect_code(0);
    assert_eq!(tree(&dest), files(&[("model.json", b"{}")]));
    let forms = sts.forms.lock().unwrap().clone();
    assert_eq!(
        forms.len(),
        1,
        "one exchange serves the whole run: {forms:#?}"
    );
    assert_eq!(forms[0]["Action"], "AssumeRoleWithWebIdentity");
    assert_eq!(
        forms[0]["RoleArn"],
        "arn:aws:iam::123456789012:role/model-reader"
    );
    assert_eq!(
        forms[0]["WebIdentityToken"],
        "eyJhbGciOi.mrsi-web-identity.sig"
    );
    assert!(forms[0]["RoleSessionName"].starts_with("mr-storage-initializer-"));
    assert_no_secrets(&out);
    assert!(!out.stderr.contains("mrsi-web-identity"), "{out:#?}");
    assert!(!out.stderr.contains("mrsi-session-token"), "{out:#?}");
}

#[test]
fn a_refused_web_identity_is_one_line_naming_sts() {
    let s3 = S3sFs::start();
    let sts = Sts::start(true);
    let tmp = TempDir::new("s3-irsa-refused");
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "eyJhbGciOi.mrsi-web-identity.sig").unwrap();
    let out = run_env(
        &[
            "s3://models/iris",
            tmp.path().join("dest").to_str().unwrap(),
        ],
        &web_identity_env(&sts, &token_file, &s3),
    );
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot get S3 credentials for s3://models/iris: STS at {}/ refused role \
             arn:aws:iam::123456789012:role/model-reader: HTTP 403 Forbidden (server said: \
             InvalidIdentityToken: Token audience mismatch)",
            sts.url()
        )
    );
    assert!(out.stderr.contains("hint: check AWS_ROLE_ARN"), "{out:#?}");
    assert!(!out.stderr.contains("mrsi-web-identity"), "{out:#?}");
}

#[test]
fn kserve_storage_spec_json_maps_onto_the_s3_variables() {
    let s3 = S3sFs::start();
    s3.put("models", "iris/model.json", b"{}");
    let tmp = TempDir::new("s3-spec");
    let dest = tmp.path().join("dest");
    // The secret's JSON names a dead endpoint; the InferenceService's parameters override it.
    let config = format!(
        r#"{{"type":"s3","access_key_id":"{ACCESS_KEY}","secret_access_key":"{SECRET_KEY}","endpoint_url":"http://127.0.0.1:{}","region":"us-east-1","bucket":"models"}}"#,
        closed_port()
    );
    let overrides = format!(r#"{{"endpoint_url":"{}"}}"#, s3.endpoint());
    let env = [
        ("STORAGE_CONFIG", config),
        ("STORAGE_OVERRIDE_CONFIG", overrides),
        // The storage spec wins over plain variables, as in KServe.
        ("AWS_SECRET_ACCESS_KEY", "overridden".into()),
        ("AWS_ACCESS_KEY_ID", "overridden".into()),
    ];
    let out = run_env(&["s3://models/iris", dest.to_str().unwrap()], &env);
    out.expect_code(0);
    assert_eq!(tree(&dest), files(&[("model.json", b"{}")]));
    assert_no_secrets(&out);

    // KServe's webhook form: S3_ENDPOINT (host only) with S3_USE_HTTPS=0.
    let dest = tmp.path().join("webhook");
    let env = [
        ("S3_ENDPOINT", format!("127.0.0.1:{}", s3.port)),
        ("S3_USE_HTTPS", "0".into()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
    ];
    let out = run_env(&["s3://models/iris", dest.to_str().unwrap()], &env);
    out.expect_code(0);
    assert_eq!(tree(&dest), files(&[("model.json", b"{}")]));
}

#[test]
fn a_registry_artifact_on_s3_downloads_end_to_end() {
    // The `iris` scenario resolves model-registry://iris to s3://models/iris/v2/.
    let registry = Replay::start("iris");
    let s3 = S3rver::start();
    s3.bucket("models")
        .put("models", "iris/v2/model.joblib", &bytes(50_000, 9))
        .put("models", "iris/v2/metadata/schema.json", b"{\"in\":4}")
        .put("models", "iris/v1/model.joblib", b"older");
    let tmp = TempDir::new("s3-e2e");
    let dest = tmp.path().join("models");
    let env = [
        ("MODEL_REGISTRY_BASE_URL", registry.authority()),
        ("AWS_ENDPOINT_URL", s3.endpoint()),
        ("awsAnonymousCredential", "true".into()),
    ];
    let out = run_env(&["model-registry://iris", dest.to_str().unwrap()], &env);
    out.expect_code(0);
    assert_eq!(
        tree(&dest),
        files(&[
            ("metadata/schema.json", b"{\"in\":4}"),
            ("model.joblib", &bytes(50_000, 9)),
        ])
    );
}

/// A fake S3 that lists `keys` (each object holding its own key as bytes) and serves them.
fn fake_s3(keys: &'static [&'static str]) -> Server {
    Server::start("127.0.0.1:0", move |stream| {
        let Some((_, target, _)) = crate::support::server::read_head(&stream) else {
            return;
        };
        let body = if target.contains("list-type=2") {
            let mut xml = String::from("<ListBucketResult><IsTruncated>false</IsTruncated>");
            for key in keys {
                xml.push_str(&format!(
                    "<Contents><Key>{key}</Key><Size>{}</Size></Contents>",
                    key.len()
                ));
            }
            xml + "</ListBucketResult>"
        } else {
            let key = target.split('?').next().unwrap_or("");
            key.trim_start_matches("/b/").to_string()
        };
        let _ = write!(
            &stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    })
}

#[test]
fn a_hostile_key_fails_the_run_before_anything_is_written() {
    let server = fake_s3(&["m/good.bin", "m/../../escaped.bin", "m/z.bin"]);
    let tmp = TempDir::new("s3-hostile");
    let dest = tmp.path().join("a/dest");
    let env = [
        ("AWS_ENDPOINT_URL", format!("http://{}", server.addr())),
        ("awsAnonymousCredential", "true".into()),
    ];
    let out = run_env(&["s3://b/m/", dest.to_str().unwrap()], &env);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        "error: refusing object 'm/../../escaped.bin' of 's3://b/m/': a '..' segment would leave DEST_DIR"
    );
    assert!(tree(tmp.path()).is_empty(), "nothing written anywhere");
}

#[test]
fn s3_verify_ssl_0_does_not_reach_the_sts_exchange() {
    // STS behind TLS with a CA nobody trusts: the web identity token must not go there, even
    // when S3_VERIFY_SSL=0 switches verification off for the S3 endpoint.
    let s3 = S3sFs::start();
    s3.put("models", "iris/model.json", b"{}");
    let sts = Sts::start(false);
    let tmp = TempDir::new("s3-irsa-untrusted");
    let certs = tls::make_certs(tmp.path());
    let proxy = tls::TlsProxy::start(&certs, sts.server.addr().port());
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "eyJhbGciOi.mrsi-web-identity.sig").unwrap();
    let mut env = web_identity_env(&sts, &token_file, &s3);
    let sts_url = format!("https://127.0.0.1:{}", proxy.port);
    env.retain(|(k, _)| *k != "AWS_ENDPOINT_URL_STS");
    env.push(("AWS_ENDPOINT_URL_STS", sts_url.clone()));
    env.push(("S3_VERIFY_SSL", "0".into()));
    let dest = tmp.path().join("dest");
    let out = run_env(&["s3://models/iris", dest.to_str().unwrap()], &env);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot get S3 credentials for s3://models/iris: TLS with STS at {sts_url}/ failed: invalid peer certificate: UnknownIssuer"
        )
    );
    assert!(
        sts.forms.lock().unwrap().is_empty(),
        "the token reached STS"
    );
    assert!(!dest.exists());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn stub_download(object: StubObject) -> (StubS3, Run, TempDir) {
    let stub = StubS3::start(object);
    let tmp = TempDir::new("s3-stub");
    let dest = tmp.path().join("dest");
    let out = run_env(&["s3://b/m/", dest.to_str().unwrap()], &stub.env());
    (stub, out, tmp)
}

#[test]
fn an_sse_kms_object_whose_etag_is_not_its_md5_downloads() {
    // SSE-KMS and SSE-C objects have 32-hex ETags that are not the MD5 of their bytes.
    let body = bytes(10_000, 4);
    for headers in [
        vec![("x-amz-server-side-encryption", "aws:kms".to_string())],
        vec![("x-amz-server-side-encryption", "aws:kms:dsse".to_string())],
        vec![(
            "x-amz-server-side-encryption-customer-algorithm",
            "AES256".to_string(),
        )],
    ] {
        let object = StubObject {
            body: body.clone(),
            etag: "0123456789abcdef0123456789abcdef".into(),
            headers,
        };
        let (stub, out, tmp) = stub_download(object);
        out.expect_code(0);
        assert_eq!(
            std::fs::read(tmp.path().join("dest/object.bin")).unwrap(),
            body
        );
        let gets = stub.gets();
        assert_eq!(
            gets[0].get("x-amz-checksum-mode").map(String::as_str),
            Some("ENABLED"),
            "S3's own checksums are asked for"
        );
    }
}

#[test]
fn a_plain_object_whose_etag_is_not_its_md5_fails() {
    let body = bytes(10_000, 4);
    let object = StubObject {
        body: body.clone(),
        etag: "0123456789abcdef0123456789abcdef".into(),
        // SSE-S3 (AES256) objects have MD5 ETags.
        headers: vec![("x-amz-server-side-encryption", "AES256".into())],
    };
    let (_stub, out, tmp) = stub_download(object);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot download s3://b/m/object.bin: the bytes' MD5 is {}, the ETag says 0123456789abcdef0123456789abcdef",
            hex(&md5::compute(&body).0)
        )
    );
    assert!(
        !tmp.path().join("dest/object.bin").exists(),
        "no file under its final name"
    );
    // The right MD5 passes.
    let object = StubObject {
        body: body.clone(),
        etag: hex(&md5::compute(&body).0),
        headers: vec![],
    };
    let (_stub, out, _tmp) = stub_download(object);
    out.expect_code(0);
}

#[test]
fn s3_checksums_are_checked_before_the_etag() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let body = bytes(10_000, 5);
    let sha256 = ring::digest::digest(&ring::digest::SHA256, &body);
    let crc32 = crc32fast::hash(&body).to_be_bytes();
    // An SSE-KMS object with a whole-object checksum: the checksum is checked.
    for (name, good) in [
        ("x-amz-checksum-sha256", b64(sha256.as_ref())),
        ("x-amz-checksum-crc32", b64(&crc32)),
    ] {
        let mut wrong = b64(&[0; 4]);
        if name.ends_with("sha256") {
            wrong = b64(&[0; 32]);
        }
        for (value, ok) in [(good.clone(), true), (wrong.clone(), false)] {
            let object = StubObject {
                body: body.clone(),
                etag: "0123456789abcdef0123456789abcdef".into(),
                headers: vec![
                    ("x-amz-server-side-encryption", "aws:kms".into()),
                    (name, value),
                    ("x-amz-checksum-type", "FULL_OBJECT".into()),
                ],
            };
            let (_stub, out, _tmp) = stub_download(object);
            if ok {
                out.expect_code(0);
            } else {
                out.expect_code(1);
                let algorithm = if name.ends_with("sha256") {
                    "SHA-256"
                } else {
                    "CRC32"
                };
                assert_eq!(
                    out.last_line(),
                    format!(
                        "error: cannot download s3://b/m/object.bin: the bytes' {algorithm} is {good}, {name} says {wrong}"
                    )
                );
            }
        }
    }
    // A composite checksum (of the parts' checksums) is not the bytes': not checked.
    let object = StubObject {
        body: body.clone(),
        etag: hex(&md5::compute(&body).0),
        headers: vec![
            ("x-amz-checksum-crc32", format!("{}-2", b64(&[0; 4]))),
            ("x-amz-checksum-type", "COMPOSITE".into()),
        ],
    };
    stub_download(object).1.expect_code(0);
}

/// The benchmark's static S3 server (`support::s3static`) answers s5cmd (the AWS SDK for Go)
/// and this program alike: a listing of more than one page, nested keys, and a file large
/// enough to come in ranged parts all arrive whole, through both clients.
#[test]
fn the_static_s3_server_is_faithful_to_s5cmd_and_us() {
    use crate::support::s3::installed;
    use crate::support::s3static::S3Static;
    let tmp = TempDir::new("s3static");
    let root = tmp.path().join("root");
    let model = root.join("bench/model");
    let big = bytes((64 << 20) + 4097, 3);
    std::fs::create_dir_all(model.join("sub")).unwrap();
    std::fs::write(model.join("big.bin"), &big).unwrap();
    for i in 0..1_050 {
        std::fs::write(model.join(format!("sub/f{i:04}.txt")), format!("file {i}")).unwrap();
    }
    // A sibling the prefix must not take.
    std::fs::create_dir_all(root.join("bench/models")).unwrap();
    std::fs::write(root.join("bench/models/no"), b"no").unwrap();
    let s3 = S3Static::start(&root, "127.0.0.1:0");
    let expected = tree(&model);
    assert_eq!(expected.len(), 1_051);

    let ours = tmp.path().join("ours");
    let env = vec![
        ("AWS_ENDPOINT_URL", s3.endpoint()),
        ("awsAnonymousCredential", "true".into()),
    ];
    run_env(&["s3://bench/model", ours.to_str().unwrap()], &env).expect_code(0);
    assert!(tree(&ours) == expected, "this program's copy differs");

    let theirs = tmp.path().join("s5cmd");
    let out = std::process::Command::new(installed("bin/s5cmd"))
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", "any")
        .env("AWS_SECRET_ACCESS_KEY", "any")
        .env("AWS_REGION", "us-east-1")
        .args(["--endpoint-url", &s3.endpoint(), "cp", "s3://bench/model/*"])
        .arg(format!("{}/", theirs.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "s5cmd: {out:?}");
    assert!(tree(&theirs) == expected, "s5cmd's copy differs");
}
