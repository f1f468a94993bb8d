//! oci:// against Debian's docker-registry on 127.0.0.1, content pushed by ORAS and buildah.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::support::oci::{ArtifactLayer, Buildah, Registry, Step, digest, htpasswd};
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

fn zstd(bytes: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
}

// The CNCF ModelPack spec's media types (modelpack/model-spec, specs-go/v1/mediatype.go) and
// KitOps' (kitops, pkg/lib/constants).
const MODELPACK: &str = "application/vnd.cncf.model.manifest.v1+json";
const MODELPACK_CONFIG: &str = "application/vnd.cncf.model.config.v1+json";
const FILEPATH: &str = "org.cncf.model.filepath";
const KITOPS: &str = "application/vnd.kitops.modelkit.manifest.v1+json";
const KITOPS_CONFIG: &str = "application/vnd.kitops.modelkit.config.v1+json";

/// A ModelPack artifact as `modctl` lays one out, pushed by ORAS: each file a tar layer of
/// its own (plain, gzip or zstd, by kind: weights, weight configs, docs) annotated with its
/// path, one raw file, the model config. Returns the manifest's digest, the files that must
/// land, and the tar layers' digests (in manifest order).
fn push_modelpack(
    registry: &Registry,
    target: &str,
) -> (
    String,
    std::collections::BTreeMap<String, Vec<u8>>,
    Vec<String>,
) {
    let shard1 = bytes(3 << 20, 21);
    let shard2 = bytes(2 << 20, 22);
    let tokenizer = br#"{"version":"1.0"}"#.as_slice();
    let readme = b"# iris\n".as_slice();
    let one = tar_of(&[("weights/model-00001-of-00002.safetensors", &shard1)]);
    let two = zstd(&tar_of(&[(
        "weights/model-00002-of-00002.safetensors",
        &shard2,
    )]));
    let tok = gzip(&tar_of(&[("tokenizer.json", tokenizer)]));
    let doc = tar_of(&[("README.md", readme)]);
    let config = serde_json::json!({
        "descriptor": {"name": "iris", "version": "v1"},
        "config": {"format": "safetensors", "paramSize": "1M"},
        "modelfs": {"type": "layers", "diffIds": [digest(&one), digest(&doc)]}
    })
    .to_string();
    let layers: &[ArtifactLayer<'_>] = &[
        (
            "model-00001-of-00002.safetensors",
            MODEL_TAR,
            &one,
            &[(FILEPATH, "weights/model-00001-of-00002.safetensors")],
        ),
        (
            "model-00002-of-00002.safetensors",
            "application/vnd.cncf.model.weight.v1.tar+zstd",
            &two,
            &[(FILEPATH, "weights/model-00002-of-00002.safetensors")],
        ),
        (
            "tokenizer.json",
            "application/vnd.cncf.model.weight.config.v1.tar+gzip",
            &tok,
            &[(FILEPATH, "tokenizer.json")],
        ),
        (
            "README.md",
            "application/vnd.cncf.model.doc.v1.tar",
            &doc,
            &[(FILEPATH, "README.md")],
        ),
        (
            "generation_config.json",
            "application/vnd.cncf.model.weight.config.v1.raw",
            b"{}",
            &[(FILEPATH, "generation_config.json")],
        ),
    ];
    let manifest = registry.push_artifact(
        target,
        MODELPACK,
        ("config.json", MODELPACK_CONFIG, config.as_bytes()),
        layers,
    );
    let want = files(&[
        ("README.md", readme),
        ("generation_config.json", b"{}"),
        ("tokenizer.json", tokenizer),
        ("weights/model-00001-of-00002.safetensors", &shard1),
        ("weights/model-00002-of-00002.safetensors", &shard2),
    ]);
    let tars = [&one, &two, &tok, &doc].map(|t| digest(t)).to_vec();
    (manifest, want, tars)
}

#[test]
fn oci_modelpack_and_modelkit_pushed_by_oras() {
    let registry = Registry::start();
    let (manifest, want, _) = push_modelpack(&registry, "models/pack:v1");
    // What ORAS pushed is ModelPack-shaped: its artifact type, config and layer media types.
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(registry.blob(&manifest)).unwrap()).unwrap();
    assert_eq!(stored["artifactType"], MODELPACK, "{stored}");
    assert_eq!(stored["config"]["mediaType"], MODELPACK_CONFIG, "{stored}");
    assert_eq!(
        stored["layers"][1]["mediaType"],
        "application/vnd.cncf.model.weight.v1.tar+zstd"
    );
    assert_eq!(stored["layers"][3]["annotations"][FILEPATH], "README.md");

    let uri = format!("oci://{}/models/pack:v1", registry.host());
    let dest = TempDir::new("oci-pack");
    let out = run_env(&[&uri, dest.path().to_str().unwrap()], &env(&registry));
    out.expect_code(0);
    assert_eq!(tree(dest.path()), want);
    assert!(
        out.stderr.contains("extracted 4 file(s) from 4 layer(s)"),
        "{}",
        out.stderr
    );

    // The patterns apply to what the layers hold.
    let dest = TempDir::new("oci-pack-filtered");
    let mut vars = env(&registry);
    vars.push(("STORAGE_IGNORE_PATTERNS", "*.md".into()));
    run_env(&[&uri, dest.path().to_str().unwrap()], &vars).expect_code(0);
    assert!(!dest.path().join("README.md").exists());
    assert!(dest.path().join("tokenizer.json").exists());

    // A KitOps ModelKit: the Kitfile as config, gzip tar layers per kind.
    let model = bytes(1 << 20, 23);
    let kitfile = serde_json::json!({
        "manifestVersion": "1.0.0",
        "package": {"name": "iris"},
        "model": {"name": "iris", "path": "model.onnx"},
        "code": [{"path": "src"}],
        "docs": [{"path": "README.md"}]
    })
    .to_string();
    let layers: &[ArtifactLayer<'_>] = &[
        (
            "model.tar.gz",
            "application/vnd.kitops.modelkit.model.v1.tar+gzip",
            &gzip(&tar_of(&[("model.onnx", &model)])),
            &[],
        ),
        (
            "code.tar.gz",
            "application/vnd.kitops.modelkit.code.v1.tar+gzip",
            &gzip(&tar_of(&[("src/train.py", b"print(1)")])),
            &[],
        ),
        (
            "docs.tar.gz",
            "application/vnd.kitops.modelkit.docs.v1.tar+gzip",
            &gzip(&tar_of(&[("README.md", b"kit")])),
            &[],
        ),
    ];
    registry.push_artifact(
        "models/kit:v1",
        KITOPS,
        ("Kitfile.json", KITOPS_CONFIG, kitfile.as_bytes()),
        layers,
    );
    let uri = format!("oci://{}/models/kit:v1", registry.host());
    let dest = TempDir::new("oci-kit");
    run_env(&[&uri, dest.path().to_str().unwrap()], &env(&registry)).expect_code(0);
    assert_eq!(
        tree(dest.path()),
        files(&[
            ("README.md", b"kit"),
            ("model.onnx", &model),
            ("src/train.py", b"print(1)")
        ])
    );
}

#[test]
fn oci_modelpack_pushed_and_pulled_by_a_modelpack_client() {
    // A model folder, pushed by modelpack-client as modctl lays an artifact out: a raw file
    // per file, a tar layer per folder (plain, gzip, zstd by media type).
    let model = TempDir::new("modelpack-src");
    let root = model.path();
    let weights = bytes(2 << 20, 31);
    let shard = bytes(1 << 20, 32);
    std::fs::write(root.join("model.safetensors"), &weights).unwrap();
    std::fs::write(root.join("config.json"), b"{\"arch\":\"iris\"}").unwrap();
    for (path, bytes) in [
        ("shards/a.safetensors", shard.as_slice()),
        ("shards/b.safetensors", b"b"),
        ("tokenizer/tokenizer.json", b"{}"),
        ("tokenizer/vocab/merges.txt", b"a b"),
        ("docs/README.md", b"# iris"),
    ] {
        std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
        std::fs::write(root.join(path), bytes).unwrap();
    }
    let registry = Registry::start();
    let manifest = registry.push_modelpack(
        "models/mp:v1",
        root,
        &[
            (
                "model.safetensors",
                "application/vnd.cncf.model.weight.v1.raw",
            ),
            (
                "config.json",
                "application/vnd.cncf.model.weight.config.v1.raw",
            ),
            ("shards", "application/vnd.cncf.model.weight.v1.tar+zstd"),
            (
                "tokenizer",
                "application/vnd.cncf.model.weight.config.v1.raw",
            ),
            ("docs", "application/vnd.cncf.model.doc.v1.tar+gzip"),
        ],
    );
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(registry.blob(&manifest)).unwrap()).unwrap();
    assert_eq!(stored["artifactType"], MODELPACK, "{stored}");
    assert_eq!(stored["config"]["mediaType"], MODELPACK_CONFIG, "{stored}");
    let types: Vec<&str> = stored["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.cncf.model.weight.v1.raw",
            "application/vnd.cncf.model.weight.config.v1.raw",
            "application/vnd.cncf.model.weight.v1.tar+zstd",
            "application/vnd.cncf.model.weight.config.v1.tar",
            "application/vnd.cncf.model.doc.v1.tar+gzip",
        ]
    );

    let uri = format!("oci://{}/models/mp:v1", registry.host());
    let dest = TempDir::new("oci-modelpack-client");
    let out = run_env(&[&uri, dest.path().to_str().unwrap()], &env(&registry));
    out.expect_code(0);
    assert_eq!(tree(dest.path()), tree(root), "{}", out.stderr);
    // The client's own pull lands the same files.
    let pulled = TempDir::new("oci-modelpack-pulled");
    registry.pull_modelpack("models/mp:v1", pulled.path());
    assert_eq!(tree(pulled.path()), tree(root));
}

#[test]
fn oci_tar_layers_rerun_fetches_only_what_changed() {
    let registry = Registry::start();
    let (_, want, tars) = push_modelpack(&registry, "models/pack:v1");
    let uri = format!("oci://{}/models/pack:v1", registry.host());
    let dest = TempDir::new("oci-rerun");
    let arg = dest.path().to_str().unwrap();
    let fetched = |since: usize| -> Vec<String> {
        let all = registry.blob_gets();
        let mut tars: Vec<String> = all[since..]
            .iter()
            .filter(|d| tars.contains(d))
            .cloned()
            .collect();
        tars.sort();
        tars
    };
    let mut sorted = tars.clone();
    sorted.sort();

    let out = run_env(&[&uri, arg], &env(&registry));
    out.expect_code(0);
    assert_eq!(tree(dest.path()), want);
    assert_eq!(fetched(0), sorted, "each tar layer once");
    // Progress, as for other downloads: the layers' bytes, each layer counting as a file.
    assert!(out.stderr.contains("progress: "), "{}", out.stderr);
    assert!(out.stderr.contains(" of 4 files"), "{}", out.stderr);

    // A rerun: every layer's files are in place, untouched; no tar layer is fetched.
    let before = registry.blob_gets().len();
    let out = run_env(&[&uri, arg], &env(&registry));
    out.expect_code(0);
    assert_eq!(fetched(before), Vec::<String>::new(), "{}", out.stderr);
    assert!(
        out.stderr.contains("; 4 layer(s) already applied"),
        "{}",
        out.stderr
    );
    assert_eq!(tree(dest.path()), want);

    // A file removed, another rewritten: their layers (only) are fetched again.
    std::fs::remove_file(dest.path().join("README.md")).unwrap();
    std::fs::write(dest.path().join("tokenizer.json"), b"changed").unwrap();
    let before = registry.blob_gets().len();
    let out = run_env(&[&uri, arg], &env(&registry));
    out.expect_code(0);
    let mut again = vec![tars[2].clone(), tars[3].clone()];
    again.sort();
    assert_eq!(fetched(before), again, "{}", out.stderr);
    assert_eq!(tree(dest.path()), want);

    // A record that is not one vouches for nothing: every layer again.
    std::fs::write(
        dest.path().join(".mrsi-layers"),
        b"mrsi-layers v1\n{not json}\n",
    )
    .unwrap();
    let before = registry.blob_gets().len();
    run_env(&[&uri, arg], &env(&registry)).expect_code(0);
    assert_eq!(fetched(before), sorted);
    assert_eq!(tree(dest.path()), want);
}

#[test]
fn oci_a_failed_layer_keeps_the_layers_before_it() {
    let registry = Registry::start();
    let tars: Vec<Vec<u8>> = (0..3u32)
        .map(|i| tar_of(&[(&format!("l{i}.bin"), &bytes(200_000, 40 + i))]))
        .collect();
    let pushed: Vec<(&str, &str, &[u8])> = vec![
        ("a.tar", MODEL_TAR, &tars[0]),
        ("b.tar", MODEL_TAR, &tars[1]),
        ("c.tar", MODEL_TAR, &tars[2]),
    ];
    registry.push_typed("models/three:v1", &pushed);
    // The middle layer changed in the registry's storage, same size.
    let stored = registry.blob(&digest(&tars[1]));
    let mut bad = tars[1].clone();
    bad[1000] ^= 1;
    std::fs::write(&stored, &bad).unwrap();
    let uri = format!("oci://{}/models/three:v1", registry.host());
    let dest = TempDir::new("oci-three");
    let arg = dest.path().to_str().unwrap();
    let out = run_env(&[&uri, arg], &env(&registry));
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: verification failed for 'layer {}' of '{uri}': the bytes' SHA-256 is {}, the source listed {}",
            digest(&tars[1]),
            &digest(&bad)[7..],
            &digest(&tars[1])[7..]
        )
    );
    // The first landed; nothing of the second or third, no staging folder either.
    assert_eq!(
        tree(dest.path()),
        files(&[("l0.bin", &bytes(200_000, 40))]),
        "{}",
        out.stderr
    );

    // Repaired: the rerun fetches the second and third only.
    std::fs::write(&stored, &tars[1]).unwrap();
    let before = registry.blob_gets().len();
    run_env(&[&uri, arg], &env(&registry)).expect_code(0);
    let mut fetched = registry.blob_gets()[before..].to_vec();
    fetched.sort();
    let mut want = vec![digest(&tars[1]), digest(&tars[2])];
    want.sort();
    assert_eq!(fetched, want);
    assert_eq!(tree(dest.path()).len(), 3);
}

/// A registry stub serving an artifact of `layers` (tar bytes each): every blob GET waits
/// until `gate` GETs are in flight at once (or 60 s pass, so a client fetching one at a time
/// is seen, not hung), and the most in flight is counted.
struct GatedRegistry {
    server: Server,
    most: std::sync::Arc<std::sync::Mutex<usize>>,
}

fn gated_registry(layers: Vec<Vec<u8>>, gate: usize) -> GatedRegistry {
    use std::sync::{Arc, Condvar, Mutex};
    let descriptors: Vec<_> = layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "mediaType": MODEL_TAR, "digest": digest(l), "size": l.len()
            })
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": MODELPACK,
        "config": {"mediaType": MODELPACK_CONFIG, "digest": digest(b"{}"), "size": 2},
        "layers": descriptors
    })
    .to_string();
    let flight = Arc::new((Mutex::new((0usize, 0usize)), Condvar::new()));
    let most = Arc::new(Mutex::new(0));
    let seen = most.clone();
    let server = Server::start("127.0.0.1:0", move |mut stream| {
        use std::io::Write;
        let Some((_, target, _)) = read_head(&stream) else {
            return;
        };
        if target.ends_with("/manifests/v1") {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\n\r\n",
                manifest.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(manifest.as_bytes());
            return;
        }
        let Some(layer) = layers
            .iter()
            .find(|l| target.ends_with(&format!("/blobs/{}", digest(l))))
        else {
            let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            return;
        };
        let (lock, cv) = &*flight;
        {
            let mut f = lock.lock().unwrap();
            f.0 += 1;
            f.1 = f.1.max(f.0);
            *seen.lock().unwrap() = f.1;
            cv.notify_all();
            let (mut f, _) = cv
                .wait_timeout_while(f, std::time::Duration::from_secs(60), |f| f.1 < gate)
                .unwrap();
            f.0 -= 1;
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            layer.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(layer);
    });
    GatedRegistry { server, most }
}

#[test]
fn oci_tar_layers_stream_at_once_within_jobs() {
    let layers: Vec<Vec<u8>> = (0..3u32)
        .map(|i| tar_of(&[(&format!("part{i}.bin"), &bytes(300_000, i))]))
        .collect();
    let want: std::collections::BTreeMap<String, Vec<u8>> = (0..3u32)
        .map(|i| (format!("part{i}.bin"), bytes(300_000, i)))
        .collect();
    // Each blob is answered only once three are asked for at once.
    let gated = gated_registry(layers.clone(), 3);
    let host = gated.server.addr().to_string();
    let uri = format!("oci://{host}/models/gated:v1");
    let dest = TempDir::new("oci-gated");
    let vars = [("OCI_INSECURE_REGISTRIES", host)];
    let out = run_env(&[&uri, dest.path().to_str().unwrap()], &vars);
    out.expect_code(0);
    assert_eq!(tree(dest.path()), want);
    assert_eq!(*gated.most.lock().unwrap(), 3, "{}", out.stderr);

    // -j 1: one layer at a time.
    let open = gated_registry(layers, 0);
    let host = open.server.addr().to_string();
    let uri = format!("oci://{host}/models/gated:v1");
    let dest = TempDir::new("oci-one-at-a-time");
    let vars = [("OCI_INSECURE_REGISTRIES", host)];
    let out = run_env(&["-j", "1", &uri, dest.path().to_str().unwrap()], &vars);
    out.expect_code(0);
    assert_eq!(tree(dest.path()), want);
    assert_eq!(*open.most.lock().unwrap(), 1);
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

    // A layer holding this program's own files: refused, nothing of it lands.
    let own = tar_of(&[("a.txt", b"a"), (".mrsi-layers", b"mrsi-layers v1\n")]);
    registry.push_typed("models/own:v1", &[("o.tar", MODEL_TAR, &own)]);
    let uri = format!("oci://{}/models/own:v1", registry.host());
    let out = run_env(&[&uri, dest_arg], &env(&registry));
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot extract '{}': the layer holds '.mrsi-layers', a name of this program's own files in DEST_DIR",
            dest.join(".mrsi-layers").display()
        )
    );
    assert!(!dest.join("a.txt").exists());

    // A file of the artifact named as the layer record: refused before anything is fetched.
    registry.push_files("models/record:v1", &[(".mrsi-layers", b"x")]);
    let uri = format!("oci://{}/models/record:v1", registry.host());
    let out = run_env(&[&uri, dest_arg], &env(&registry));
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: refusing object '.mrsi-layers' of '{uri}': '.mrsi-layers' is this program's layer record in DEST_DIR"
        )
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

    // Reruns. Untouched: no layer fetched. A file of the second (last) layer gone: that layer
    // alone. A file of the first gone: the first, and the second after it, since its whiteouts
    // removed what the first put there.
    let uri = format!("oci://{}/models/car:v1", registry.host());
    let dest = TempDir::new("oci-modelcar-rerun");
    let arg = dest.path().to_str().unwrap();
    let rerun = |removed: Option<&str>| {
        if let Some(name) = removed {
            std::fs::remove_file(dest.path().join(name)).unwrap();
        }
        let before = registry.blob_gets().len();
        let out = run_env(&[&uri, arg], &env(&registry));
        out.expect_code(0);
        assert_eq!(tree(dest.path()), want, "{}", out.stderr);
        registry.blob_gets().len() - before
    };
    assert_eq!(rerun(None), 2);
    assert_eq!(rerun(None), 0);
    assert_eq!(rerun(Some("weights.bin")), 1);
    assert_eq!(rerun(Some("config.json")), 2);

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
