//! oci:// against Debian's docker-registry on 127.0.0.1, content pushed by ORAS and buildah.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::support::oci::{Buildah, Registry, Step, digest, htpasswd};
use crate::support::replay::Replay;
use crate::support::server::{Server, read_head};
use crate::support::tls::make_certs;
use crate::support::token::{SERVICE, TokenServer};
use crate::support::web::{Behaviour, Web};
use crate::support::{TempDir, bytes, files, run_env, tree};

fn env(registry: &Registry) -> Vec<(&'static str, String)> {
    vec![("OCI_INSECURE_REGISTRIES", registry.host())]
}

#[test]
fn oci_files_by_tag_and_by_digest() {
    let registry = Registry::start();
    let weights = bytes(3 << 20, 7);
    let manifest = registry.push_files(
        "models/iris:v1",
        &[("config.json", b"{}\n"), ("weights.bin", &weights)],
    );
    let want = files(&[("config.json", b"{}\n"), ("weights.bin", &weights)]);
    let dest = TempDir::new("oci-tag");
    let uri = format!("oci://{}/models/iris:v1", registry.host());
    let out = run_env(&[&uri, dest.path().to_str().unwrap()], &env(&registry));
    out.expect_code(0);
    assert_eq!(tree(dest.path()), want);
    assert!(
        out.stderr.contains(&format!("manifest {manifest}")),
        "{out:#?}"
    );

    let dest = TempDir::new("oci-digest");
    let uri = format!("oci://{}/models/iris@{manifest}", registry.host());
    run_env(&[&uri, dest.path().to_str().unwrap()], &env(&registry)).expect_code(0);
    assert_eq!(tree(dest.path()), want);

    // --resolve: the manifest the tag names now, and the URI that pins it; no blob fetched.
    let tagged = format!("oci://{}/models/iris:v1", registry.host());
    let out = run_env(&["--resolve", &tagged], &env(&registry));
    out.expect_code(0);
    let resolved: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        resolved,
        serde_json::json!({
            "uri": tagged,
            "registry": registry.host(),
            "repository": "models/iris",
            "reference": "v1",
            "manifest_digest": manifest,
            "pinned_uri": uri,
        })
    );

    // Manifest bytes the registry changed under the digest that names them: refused.
    let stored = registry.blob(&manifest);
    let mut tampered = std::fs::read(&stored).unwrap();
    tampered.push(b'\n');
    std::fs::write(&stored, &tampered).unwrap();
    let dest = TempDir::new("oci-wrong-digest");
    let out = run_env(&[&uri, dest.path().to_str().unwrap()], &env(&registry));
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot resolve {uri}: digest mismatch: the manifest's bytes hash to {}, the reference names {manifest}",
            digest(&tampered)
        )
    );
    assert!(tree(dest.path()).is_empty());
}

#[test]
fn oci_missing_tag_is_one_line() {
    let registry = Registry::start();
    registry.push_files("models/iris:v1", &[("a.txt", b"a")]);
    let uri = format!("oci://{}/models/iris:v2", registry.host());
    let dest = TempDir::new("oci-missing");
    let out = run_env(&[&uri, dest.path().to_str().unwrap()], &env(&registry));
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot resolve {uri}: manifest unknown: the repository 'models/iris' has no manifest 'v2': HTTP 404 Not Found (server said: MANIFEST_UNKNOWN: manifest unknown)"
        )
    );
    assert!(
        out.stderr
            .contains("hint: name a tag or digest that exists")
    );
}

#[test]
fn oci_tampered_blob_lands_nowhere() {
    let registry = Registry::start();
    let good = bytes(1 << 20, 3);
    registry.push_files("models/t:v1", &[("w.bin", &good)]);
    // Same size, other bytes: only the digest can tell.
    let mut bad = good.clone();
    bad[12345] ^= 1;
    std::fs::write(registry.blob(&digest(&good)), &bad).unwrap();
    let uri = format!("oci://{}/models/t:v1", registry.host());
    let dest = TempDir::new("oci-tampered");
    let out = run_env(&[&uri, dest.path().to_str().unwrap()], &env(&registry));
    out.expect_code(1);
    let (good, bad) = (digest(&good), digest(&bad));
    let (good, bad) = (&good[7..], &bad[7..]);
    assert!(
        out.last_line().contains(&format!(
            "the bytes' SHA-256 is {bad}, the source listed {good}"
        )),
        "{out:#?}"
    );
    assert!(!dest.path().join("w.bin").exists());
}

#[test]
fn oci_large_layer_in_ranged_parts() {
    let registry = Registry::start();
    let big = bytes(200 << 20, 11);
    registry.push_files("models/big:v1", &[("model.safetensors", &big)]);
    let uri = format!("oci://{}/models/big:v1", registry.host());
    let dest = TempDir::new("oci-big");
    let mut vars = env(&registry);
    vars.push(("RUST_LOG", "mr_storage_initializer::engine=debug".into()));
    let out = run_env(&[&uri, dest.path().to_str().unwrap()], &vars);
    out.expect_code(0);
    // 200 MiB in the engine's 64 MiB parts.
    assert!(out.stderr.contains("'model.safetensors' of"), "{out:#?}");
    assert!(
        out.stderr.contains("bytes 201326592-209715199"),
        "{}",
        out.stderr
    );
    assert!(std::fs::read(dest.path().join("model.safetensors")).unwrap() == big);
}

#[test]
fn oci_htpasswd_credentials_from_docker_config() {
    let mut registry = Registry::start();
    registry.push_files("models/private:v1", &[("a.txt", b"secret model")]);
    let passwd = registry.dir.path().join("htpasswd");
    htpasswd(&passwd, "alice", "s3cr3t-pw");
    let auth = format!(
        "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
        passwd.display()
    );
    registry.restart(&auth, None);
    let uri = format!("oci://{}/models/private:v1", registry.host());

    // Anonymous: refused, with the hint naming the Docker config variables.
    let dest = TempDir::new("oci-anon");
    let out = run_env(&[&uri, dest.path().to_str().unwrap()], &env(&registry));
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot resolve {uri}: unauthorized: the registry asks for a user name and password, and no Docker config has them"
        )
    );
    assert!(out.stderr.contains("hint: give the registry's credentials in a Docker config: REGISTRY_AUTH_FILE, DOCKER_CONFIG"));

    // KServe's mounted dockerconfigjson secret: a folder holding .dockerconfigjson.
    let secret = TempDir::new("oci-secret");
    let config = |password: &str| {
        let auth = STANDARD.encode(format!("alice:{password}"));
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.host()
        )
    };
    std::fs::write(secret.path().join(".dockerconfigjson"), config("s3cr3t-pw")).unwrap();
    let mut vars = env(&registry);
    vars.push(("DOCKER_CONFIG", secret.path().to_str().unwrap().into()));
    let dest = TempDir::new("oci-basic");
    let out = run_env(&[&uri, dest.path().to_str().unwrap()], &vars);
    out.expect_code(0);
    assert_eq!(tree(dest.path()), files(&[("a.txt", b"secret model")]));
    assert!(!out.stderr.contains("s3cr3t"), "{}", out.stderr);

    // A wrong password: refused, naming the user and the file, never the password.
    let file = secret.path().join("auth.json");
    std::fs::write(&file, config("wrong-pw")).unwrap();
    let mut vars = env(&registry);
    vars.push(("REGISTRY_AUTH_FILE", file.to_str().unwrap().into()));
    let dest = TempDir::new("oci-refused");
    let out = run_env(&[&uri, dest.path().to_str().unwrap()], &vars);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot resolve {uri}: unauthorized: the registry refused the credentials of 'alice' from '{}': HTTP 401 Unauthorized (server said: UNAUTHORIZED: authentication required)",
            file.display()
        )
    );
    assert!(!out.stderr.contains("wrong-pw"));
}

#[test]
fn oci_tls_with_a_private_ca() {
    let mut registry = Registry::start();
    registry.push_files("models/tls:v1", &[("a.txt", b"over tls")]);
    let certs = make_certs(registry.dir.path());
    registry.restart("", Some(&certs));
    let uri = format!("oci://{}/models/tls:v1", registry.host());
    let dest = TempDir::new("oci-tls");
    let ca = certs.ca.to_str().unwrap().to_string();
    let out = run_env(
        &[&uri, dest.path().to_str().unwrap()],
        &[("SSL_CERT_FILE", ca)],
    );
    out.expect_code(0);
    assert_eq!(tree(dest.path()), files(&[("a.txt", b"over tls")]));
    // Without the CA: a TLS failure, and the hint says how to trust it.
    let out = run_env(&[&uri, dest.path().to_str().unwrap()], &[]);
    out.expect_code(1);
    assert!(
        out.last_line().contains("TLS with the registry https://"),
        "{out:#?}"
    );
    assert!(
        out.stderr
            .contains("hint: trust the server's CA with SSL_CERT_FILE")
    );
}

const MODEL_TAR: &str = "application/vnd.cncf.model.weight.v1.tar";
const MODEL_TAR_GZ: &str = "application/vnd.cncf.model.weight.v1.tar+gzip";

/// A tar of `entries`, names written as given (`..` included: `set_path` would refuse it).
fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        builder.append(&header, *bytes).unwrap();
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn oci_modelpack_tar_layers_beside_raw_files() {
    let registry = Registry::start();
    let weights = bytes(1 << 20, 9);
    let packed = gzip(&tar_of(&[
        ("weights/model.bin", &weights),
        ("README.md", b"hi"),
    ]));
    registry.push_typed(
        "models/pack:v1",
        &[
            (
                "config.json",
                "application/vnd.cncf.model.weight.config.v1.raw",
                b"{}",
            ),
            ("weights.tar.gz", MODEL_TAR_GZ, &packed),
        ],
    );
    let uri = format!("oci://{}/models/pack:v1", registry.host());
    let dest = TempDir::new("oci-pack");
    let out = run_env(&[&uri, dest.path().to_str().unwrap()], &env(&registry));
    out.expect_code(0);
    assert_eq!(
        tree(dest.path()),
        files(&[
            ("README.md", b"hi"),
            ("config.json", b"{}"),
            ("weights/model.bin", &weights)
        ])
    );
    assert!(
        out.stderr.contains("extracted 2 file(s) from 1 layer(s)"),
        "{}",
        out.stderr
    );

    // The patterns apply to what the layers hold.
    let dest = TempDir::new("oci-pack-filtered");
    let mut vars = env(&registry);
    vars.push(("STORAGE_IGNORE_PATTERNS", "*.md".into()));
    run_env(&[&uri, dest.path().to_str().unwrap()], &vars).expect_code(0);
    assert!(!dest.path().join("README.md").exists());
    assert!(dest.path().join("weights/model.bin").exists());
}

#[test]
fn oci_hostile_tar_layers_land_nowhere() {
    let registry = Registry::start();
    let outside = TempDir::new("oci-hostile");
    let dest = outside.path().join("dest");
    let dest_arg = dest.to_str().unwrap();

    // An entry that climbs out of DEST_DIR.
    let escape = tar_of(&[("ok.txt", b"ok"), ("../evil.txt", b"x")]);
    registry.push_typed("models/evil:v1", &[("w.tar", MODEL_TAR, &escape)]);
    let uri = format!("oci://{}/models/evil:v1", registry.host());
    let out = run_env(&[&uri, dest_arg], &env(&registry));
    out.expect_code(1);
    let layer = digest(&escape);
    assert!(
        out.last_line().starts_with(&format!(
            "error: cannot extract 'layer {layer} of {uri}': entry '../evil.txt': "
        )),
        "{out:#?}"
    );
    assert!(!outside.path().join("evil.txt").exists());
    assert!(
        !dest.join("ok.txt").exists(),
        "nothing of a failed layer lands"
    );

    // A bomb: a few bytes that declare 8 GiB.
    let mut header = tar::Header::new_gnu();
    header.set_path("zeros.bin").unwrap();
    header.set_size(8 << 30);
    header.set_cksum();
    let mut bomb = header.as_bytes().to_vec();
    bomb.extend(vec![0; 1 << 20]);
    let bomb = gzip(&bomb);
    registry.push_typed("models/bomb:v1", &[("b.tar.gz", MODEL_TAR_GZ, &bomb)]);
    let uri = format!("oci://{}/models/bomb:v1", registry.host());
    let out = run_env(&[&uri, dest_arg], &env(&registry));
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot extract 'layer {} of {uri}': entry 'zeros.bin': its 8589934592 bytes would take the extracted total past 1073741824 bytes (100 times the archive's size, at least 1 GiB)",
            digest(&bomb)
        )
    );

    // A tar layer changed in the registry: its files never reach a final name.
    let good = tar_of(&[("model.bin", &bytes(4096, 1))]);
    registry.push_typed("models/changed:v1", &[("m.tar", MODEL_TAR, &good)]);
    let mut bad = good.clone();
    bad[600] ^= 1;
    std::fs::write(registry.blob(&digest(&good)), &bad).unwrap();
    let uri = format!("oci://{}/models/changed:v1", registry.host());
    let out = run_env(&[&uri, dest_arg], &env(&registry));
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: verification failed for 'layer {}' of '{uri}': the bytes' SHA-256 is {}, the source listed {}",
            digest(&good),
            &digest(&bad)[7..],
            &digest(&good)[7..]
        )
    );
    assert!(tree(&dest).is_empty(), "{:?}", tree(&dest));
}

#[test]
fn oci_modelcar_image_layers_with_whiteouts() {
    let buildah = Buildah::new();
    let weights = bytes(2 << 20, 5);
    buildah.image(
        "localhost/modelcar",
        "amd64",
        &[
            Step {
                write: &[
                    ("/models/config.json", b"{}"),
                    ("/models/old.bin", b"old"),
                    ("/models/dir/x.bin", b"x"),
                    ("/etc/os-release", b"scratch"),
                ],
                remove: &[],
            },
            Step {
                write: &[("/models/weights.bin", &weights)],
                remove: &["/models/old.bin", "/models/dir"],
            },
        ],
    );
    let want = files(&[("config.json", b"{}"), ("weights.bin", &weights)]);
    // One registry each: buildah would reuse the blobs it pushed to the same one, compressed.
    let mut registry = None;
    for compression in ["zstd", "gzip"] {
        let pushed = Registry::start();
        let manifest = buildah.push(
            &["push"],
            "localhost/modelcar",
            &pushed,
            "models/car:v1",
            &[&format!("--compression-format={compression}")],
        );
        let stored = std::fs::read_to_string(pushed.blob(&manifest)).unwrap();
        assert!(
            stored.contains(&format!("layer.v1.tar+{compression}")),
            "{stored}"
        );
        let uri = format!("oci://{}/models/car@{manifest}", pushed.host());
        let dest = TempDir::new("oci-modelcar");
        let out = run_env(&[&uri, dest.path().to_str().unwrap()], &env(&pushed));
        out.expect_code(0);
        assert_eq!(tree(dest.path()), want, "{compression}: {}", out.stderr);
        assert!(
            out.stderr.contains("from 2 layer(s)"),
            "{compression}: {}",
            out.stderr
        );
        registry = Some(pushed);
    }
    let registry = registry.unwrap();

    // OCI_MODEL_DIR names another folder: the whole image here.
    let uri = format!("oci://{}/models/car:v1", registry.host());
    let dest = TempDir::new("oci-modelcar-root");
    let mut vars = env(&registry);
    vars.push(("OCI_MODEL_DIR", "/".into()));
    run_env(&[&uri, dest.path().to_str().unwrap()], &vars).expect_code(0);
    assert_eq!(
        tree(dest.path()),
        files(&[
            ("etc/os-release", b"scratch"),
            ("models/config.json", b"{}"),
            ("models/weights.bin", &weights)
        ])
    );
}

#[test]
fn oci_image_index_by_platform() {
    let registry = Registry::start();
    let buildah = Buildah::new();
    for arch in ["amd64", "arm64"] {
        let write: &[(&str, &[u8])] = &[("/models/arch.txt", arch.as_bytes())];
        buildah.image(
            &format!("localhost/car-{arch}"),
            arch,
            &[Step { write, remove: &[] }],
        );
    }
    buildah.run(&["manifest", "create", "localhost/car-list"]);
    for arch in ["amd64", "arm64"] {
        buildah.run(&[
            "manifest",
            "add",
            "localhost/car-list",
            &format!("containers-storage:localhost/car-{arch}"),
        ]);
    }
    let index = buildah.push(
        &["manifest", "push", "--all"],
        "localhost/car-list",
        &registry,
        "models/multi:v1",
        &[],
    );
    let uri = format!("oci://{}/models/multi:v1", registry.host());
    for (platform, want) in [(None, "amd64"), (Some("linux/arm64"), "arm64")] {
        let dest = TempDir::new("oci-index");
        let mut vars = env(&registry);
        vars.extend(platform.map(|p| ("OCI_PLATFORM", p.to_string())));
        let out = run_env(&[&uri, dest.path().to_str().unwrap()], &vars);
        out.expect_code(0);
        assert!(out.stderr.contains("index entry sha256:"), "{}", out.stderr);
        assert_eq!(tree(dest.path()), files(&[("arch.txt", want.as_bytes())]));
        let chosen = out.stderr.split("index entry ").nth(1).unwrap()[..71].to_string();

        // --resolve: the index's digest, the manifest chosen for the platform, and a URI
        // pinning that manifest, which downloads the same files.
        let out = run_env(&["--resolve", &uri], &vars);
        out.expect_code(0);
        let resolved: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let pinned = format!("oci://{}/models/multi@{chosen}", registry.host());
        assert_eq!(resolved["manifest_digest"], chosen.as_str(), "{resolved}");
        assert_eq!(resolved["index_digest"], index.as_str(), "{resolved}");
        assert_eq!(resolved["platform"], format!("linux/{want}"), "{resolved}");
        assert_eq!(resolved["pinned_uri"], pinned.as_str(), "{resolved}");
        let dest = TempDir::new("oci-index-pinned");
        run_env(&[&pinned, dest.path().to_str().unwrap()], &env(&registry)).expect_code(0);
        assert_eq!(tree(dest.path()), files(&[("arch.txt", want.as_bytes())]));
    }
    let dest = TempDir::new("oci-index-none");
    let mut vars = env(&registry);
    vars.push(("OCI_PLATFORM", "linux/s390x".into()));
    let out = run_env(&[&uri, dest.path().to_str().unwrap()], &vars);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot resolve {uri}: the image index has no manifest for linux/s390x (it has: linux/amd64, linux/arm64)"
        )
    );
}

#[test]
fn oci_token_auth_anonymous_and_with_credentials() {
    let mut registry = Registry::start();
    registry.push_files("models/tok:v1", &[("a.txt", b"by token")]);
    // Each restart is on a new port.
    let uri_of = |registry: &Registry| format!("oci://{}/models/tok:v1", registry.host());

    // Anonymous: the challenge's realm, service and scope, no credentials.
    let anonymous = TempDir::new("oci-token-anon");
    let tokens = TokenServer::start(anonymous.path(), None);
    registry.restart(&tokens.registry_config(), None);
    let uri = uri_of(&registry);
    let dest = TempDir::new("oci-token");
    let out = run_env(&[&uri, dest.path().to_str().unwrap()], &env(&registry));
    out.expect_code(0);
    assert_eq!(tree(dest.path()), files(&[("a.txt", b"by token")]));
    let asked = tokens.asked();
    assert!(!asked.is_empty());
    assert!(asked.iter().all(|a| a.user.is_none()), "{asked:?}");
    assert!(
        asked[0]
            .query
            .contains("scope=repository%3Amodels%2Ftok%3Apull")
            && asked[0].query.contains(&format!("service={SERVICE}")),
        "{asked:?}"
    );

    // A token server that wants bob's password: given from a Docker config, and refused.
    let secured = TempDir::new("oci-token-bob");
    let tokens = TokenServer::start(secured.path(), Some(("bob", "t0ken-pw")));
    registry.restart(&tokens.registry_config(), None);
    let uri = uri_of(&registry);
    let config = |name: &str, password: &str| {
        let auth = STANDARD.encode(format!("bob:{password}"));
        let file = secured.path().join(name);
        let json = format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.host()
        );
        std::fs::write(&file, json).unwrap();
        file
    };
    let mut vars = env(&registry);
    vars.push((
        "REGISTRY_AUTH_FILE",
        config("right.json", "t0ken-pw").to_str().unwrap().into(),
    ));
    let dest = TempDir::new("oci-token-bob");
    let out = run_env(&[&uri, dest.path().to_str().unwrap()], &vars);
    out.expect_code(0);
    assert_eq!(tree(dest.path()), files(&[("a.txt", b"by token")]));
    assert!(
        tokens
            .asked()
            .iter()
            .all(|a| a.user.as_deref() == Some("bob"))
    );
    assert!(!out.stderr.contains("t0ken-pw"));

    let wrong = config("wrong.json", "wrong-pw");
    let mut vars = env(&registry);
    vars.push(("REGISTRY_AUTH_FILE", wrong.to_str().unwrap().into()));
    let out = run_env(&[&uri, dest.path().to_str().unwrap()], &vars);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot resolve {uri}: unauthorized: the token server {} refused the credentials of 'bob' from '{}': HTTP 401 Unauthorized (server said: UNAUTHORIZED: bad credentials)",
            tokens.realm(),
            wrong.display()
        )
    );
    assert!(!out.stderr.contains("wrong-pw"));
}

/// A registry stub that demands a token, then sends blobs to `storage` with a redirect, as
/// registries on object storage do.
fn redirecting_registry(tokens: &TokenServer, storage: &Web, blob: &[u8]) -> Server {
    let realm = tokens.realm();
    let storage = storage.url();
    let blob_digest = digest(blob);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest(b"{}"), "size": 2},
        "layers": [{
            "mediaType": "application/octet-stream", "digest": blob_digest, "size": blob.len(),
            "annotations": {"org.opencontainers.image.title": "w.bin"}
        }]
    })
    .to_string();
    Server::start("127.0.0.1:0", move |mut stream| {
        use std::io::Write;
        let Some((_, target, headers)) = read_head(&stream) else {
            return;
        };
        let bearer = headers
            .get("authorization")
            .is_some_and(|a| a.starts_with("Bearer "));
        let answer = if !bearer {
            format!(
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{realm}\",service=\"{SERVICE}\",scope=\"repository:models/r:pull\"\r\nContent-Length: 0\r\n\r\n"
            )
        } else if target.ends_with("/manifests/v1") {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\n\r\n{manifest}",
                manifest.len()
            )
        } else if target.contains("/blobs/") {
            format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {storage}/w.bin?X-Signed=1\r\nContent-Length: 0\r\n\r\n"
            )
        } else {
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
        };
        let _ = stream.write_all(answer.as_bytes());
    })
}

#[test]
fn oci_token_never_reaches_the_blob_storage() {
    let dir = TempDir::new("oci-redirect");
    let tokens = TokenServer::start(dir.path(), None);
    let blob = bytes(100_000, 4);
    std::fs::create_dir(dir.path().join("storage")).unwrap();
    std::fs::write(dir.path().join("storage/w.bin"), &blob).unwrap();
    let storage = Web::start(&dir.path().join("storage"), Behaviour::default());
    let registry = redirecting_registry(&tokens, &storage, &blob);
    let host = registry.addr().to_string();
    let uri = format!("oci://{host}/models/r:v1");
    let dest = TempDir::new("oci-redirect-dest");
    let out = run_env(
        &[&uri, dest.path().to_str().unwrap()],
        &[("OCI_INSECURE_REGISTRIES", host)],
    );
    out.expect_code(0);
    assert_eq!(tree(dest.path()), files(&[("w.bin", &blob)]));
    let seen = storage.seen();
    assert!(!seen.is_empty(), "the blob came from the storage");
    assert!(
        seen.iter()
            .all(|s| !s.headers.contains_key("authorization")),
        "{seen:?}"
    );
    assert!(!tokens.asked().is_empty());
}

#[test]
fn oci_registry_artifact_pinned_by_digest_end_to_end_and_the_result() {
    // The `oci-artifact` scenario resolves model-registry://iris to
    // oci://{{oci_registry}}/models/iris@sha256:{{oci_digest}}: filled in with this registry
    // and the manifest pushed to it.
    let registry = Registry::start();
    let weights = bytes(1 << 20, 5);
    let manifest = registry.push_files(
        "models/iris:v1",
        &[("config.json", b"{}\n"), ("weights.bin", &weights)],
    );
    let want = files(&[("config.json", b"{}\n"), ("weights.bin", &weights)]);
    let mr = Replay::start("oci-artifact");
    mr.set("oci_registry", &registry.host());
    mr.set("oci_digest", manifest.strip_prefix("sha256:").unwrap());
    let tmp = TempDir::new("oci-e2e");
    let dest = tmp.path().join("models");
    let result = tmp.path().join("termination-log");
    let mut vars = env(&registry);
    vars.push(("MODEL_REGISTRY_BASE_URL", mr.authority()));
    vars.push(("MRSI_RESULT_FILE", result.to_str().unwrap().to_string()));
    let out = run_env(
        &["--json", "model-registry://iris", dest.to_str().unwrap()],
        &vars,
    );
    out.expect_code(0);
    assert_eq!(tree(&dest), want);
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    assert_eq!(out.json(), written, "--json prints what the file holds");
    let d = &written["downloads"][0];
    assert_eq!(
        d["model_registry"]["artifact_uri"],
        format!("oci://{}/models/iris@{manifest}", registry.host())
    );
    assert_eq!(d["manifest_digest"], manifest.as_str());
    assert_eq!(d["files"], 2);

    // A tag: the result pins it after the fact, a failed download's included.
    let uri = format!("oci://{}/models/iris:v1", registry.host());
    let tagged = tmp.path().join("tagged");
    let out = run_env(&["--json", &uri, tagged.to_str().unwrap()], &vars);
    out.expect_code(0);
    assert_eq!(
        out.json()["downloads"][0]["manifest_digest"],
        manifest.as_str()
    );
    std::fs::write(registry.blob(&digest(&weights)), bytes(1 << 20, 6)).unwrap();
    let broken = tmp.path().join("broken");
    let out = run_env(&["--json", &uri, broken.to_str().unwrap()], &vars);
    out.expect_code(1);
    let failed = out.json();
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["downloads"][0]["manifest_digest"], manifest.as_str());
    assert!(!broken.join("weights.bin").exists());
}
