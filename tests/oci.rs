//! oci:// against Debian's docker-registry on 127.0.0.1, content pushed by ORAS.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::support::oci::{Registry, digest, htpasswd};
use crate::support::tls::make_certs;
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
