//! A small Hugging Face Hub on 127.0.0.1, speaking what the program and `huggingface_hub` use:
//! model info (`/api/models/R/revision/REV`), the tree API with `Link` pagination
//! (`/api/models/R/tree/REV?recursive=true`), and `/R/resolve/REV/PATH` (HEAD and GET), which
//! serves git files itself and redirects LFS files to a second "storage" server that serves
//! ranges, as the Hub sends them to its CDN. Errors come as the Hub sends them: the status,
//! `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `GatedRepo`, `EntryNotFound`),
//! `X-Error-Message` and a `{"error": ...}` body. `tests/hf.rs` proves it faithful by having
//! `huggingface_hub` download the same repositories.
//!
//! Access, as the Hub answers it: a missing or private repository is 401 `RepoNotFound`
//! without a token and 404 with one; a wrong token is 401 "Invalid credentials in
//! Authorization header"; a gated repository's metadata and tree are public, its files 401
//! `GatedRepo` without a token and 403 for a token not granted access.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ring::digest;

use super::server::{Server, read_head};

/// The one token the Hub accepts.
pub const TOKEN: &str = "hf_mrsi_test_token";

/// A file of a repository.
#[derive(Clone)]
pub struct File {
    pub path: String,
    pub bytes: Arc<Vec<u8>>,
    /// Stored in LFS: the tree gives its SHA-256 and `resolve` redirects to storage.
    pub lfs: bool,
    sha256: String,
    git_oid: String,
}

impl File {
    pub fn new(path: &str, bytes: Vec<u8>, lfs: bool) -> File {
        // The git blob id: SHA-1 of `blob LEN\0BYTES` (git stores an LFS file's pointer, not
        // its bytes; the program only takes the id as a version).
        let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(format!("blob {}\0", bytes.len()).as_bytes());
        ctx.update(&bytes);
        File {
            path: path.into(),
            sha256: hex(digest::digest(&digest::SHA256, &bytes).as_ref()),
            git_oid: hex(ctx.finish().as_ref()),
            bytes: Arc::new(bytes),
            lfs,
        }
    }

    fn sha256(&self) -> String {
        self.sha256.clone()
    }

    fn git_oid(&self) -> String {
        self.git_oid.clone()
    }
}

/// A repository at one commit, named by `branch` too.
#[derive(Clone)]
pub struct Repo {
    pub id: String,
    pub commit: String,
    pub branch: String,
    pub files: Vec<File>,
    pub private: bool,
    /// Gated: `Some(granted)`, whether the test token was granted access.
    pub gated: Option<bool>,
}

impl Repo {
    pub fn new(id: &str, files: Vec<File>) -> Repo {
        let seed = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, id.as_bytes());
        Repo {
            id: id.into(),
            commit: hex(seed.as_ref()),
            branch: "main".into(),
            files,
            private: false,
            gated: None,
        }
    }

    /// Every file under `dir` (relative paths), LFS for the names `lfs` says.
    pub fn from_dir(id: &str, dir: &Path, lfs: impl Fn(&str) -> bool) -> Repo {
        let mut files = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                    files.push(File::new(&rel, std::fs::read(&p).unwrap(), lfs(&rel)));
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Repo::new(id, files)
    }
}

/// One request either server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `hub` or `storage`.
    pub server: &'static str,
    pub method: String,
    pub target: String,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
}

struct State {
    repos: Vec<Repo>,
    /// Tree entries per page.
    page_size: usize,
    /// The Hub's own URL, for `Link` and `Location`.
    hub_url: String,
    /// Where `Link` sends the next page, when not to the Hub itself (a hostile Hub).
    next_origin: Option<String>,
    /// `Link` always names the second page (a hostile Hub whose listing never ends).
    looping: bool,
    storage_url: String,
    seen: Vec<Seen>,
    /// `sha256 -> bytes to serve instead` (same length: a storage host that lies).
    tampered: HashMap<String, Vec<u8>>,
    /// Close storage connections after this many body bytes, once per blob.
    cut_after: Option<u64>,
    cut_done: Vec<String>,
}

/// The Hub and its storage host; both stop when dropped.
pub struct Hub {
    hub: Server,
    // Kept to run until dropped.
    _storage: Server,
    state: Arc<Mutex<State>>,
}

impl Hub {
    pub fn start(repos: Vec<Repo>, page_size: usize) -> Hub {
        let state = Arc::new(Mutex::new(State {
            repos,
            page_size,
            hub_url: String::new(),
            next_origin: None,
            looping: false,
            storage_url: String::new(),
            seen: Vec::new(),
            tampered: HashMap::new(),
            cut_after: None,
            cut_done: Vec::new(),
        }));
        let hub = {
            let state = state.clone();
            Server::start("127.0.0.1:0", move |s| serve_hub(s, &state))
        };
        let storage = {
            let state = state.clone();
            Server::start("127.0.0.1:0", move |s| serve_storage(s, &state))
        };
        {
            let mut s = state.lock().unwrap();
            s.hub_url = format!("http://{}", hub.addr());
            s.storage_url = format!("http://{}", storage.addr());
        }
        Hub {
            hub,
            _storage: storage,
            state,
        }
    }

    /// `HF_ENDPOINT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.hub.addr())
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn clear_seen(&self) {
        self.state.lock().unwrap().seen.clear();
    }

    /// The storage host serves `bytes` for the LFS file whose content is `original`.
    pub fn tamper(&self, original: &[u8], bytes: Vec<u8>) {
        let sha = hex(digest::digest(&digest::SHA256, original).as_ref());
        self.state.lock().unwrap().tampered.insert(sha, bytes);
    }

    /// `Link` names `origin` for the next page instead of the Hub.
    pub fn send_next_page_to(&self, origin: &str) {
        self.state.lock().unwrap().next_origin = Some(origin.into());
    }

    /// `Link` names the second page again and again.
    pub fn loop_pages(&self) {
        self.state.lock().unwrap().looping = true;
    }

    /// The storage host closes the first connection for each blob after `n` body bytes.
    pub fn cut_after(&self, n: u64) {
        self.state.lock().unwrap().cut_after = Some(n);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode(s: &str) -> String {
    mr_storage_initializer::percent_decode(s).unwrap_or_else(|_| s.to_string())
}

// An answer: status, headers, body (HEAD sends the headers only).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(value: &serde_json::Value) -> Answer {
        Answer {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    fn error(status: u16, code: Option<&str>, message: &str) -> Answer {
        let mut headers = vec![
            ("Content-Type".into(), "application/json".into()),
            ("X-Error-Message".into(), message.into()),
        ];
        if let Some(code) = code {
            headers.push(("X-Error-Code".into(), code.into()));
        }
        Answer {
            status,
            headers,
            body: serde_json::json!({ "error": message })
                .to_string()
                .into_bytes(),
        }
    }

    fn send(self, mut stream: &TcpStream, head_only: bool) {
        let reason = match self.status {
            200 => "OK",
            206 => "Partial Content",
            302 => "Found",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            416 => "Range Not Satisfiable",
            _ => "Error",
        };
        let mut head = format!("HTTP/1.1 {} {reason}\r\n", self.status);
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        let _ = stream.write_all(head.as_bytes());
        if !head_only {
            let _ = stream.write_all(&self.body);
        }
    }
}

fn serve_hub(stream: TcpStream, state: &Mutex<State>) {
    let Some((method, target, headers)) = read_head(&stream) else {
        return;
    };
    let answer = {
        let mut s = state.lock().unwrap();
        s.seen.push(Seen {
            server: "hub",
            method: method.clone(),
            target: target.clone(),
            headers: headers.clone(),
        });
        hub_answer(&s, &target, &headers)
    };
    answer.send(&stream, method == "HEAD");
}

// Who is asking: `None` anonymous, `Some(true)` the test token, `Some(false)` another.
fn caller(headers: &HashMap<String, String>) -> Option<bool> {
    let auth = headers.get("authorization")?;
    Some(auth == &format!("Bearer {TOKEN}"))
}

fn hub_answer(s: &State, target: &str, headers: &HashMap<String, String>) -> Answer {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query: HashMap<&str, &str> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    let who = caller(headers);
    if who == Some(false) {
        return Answer::error(401, None, "Invalid credentials in Authorization header");
    }
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let (api, rest) = match segments.first().map(String::as_str) {
        Some("api") if segments.get(1).map(String::as_str) == Some("models") => {
            (true, &segments[2..])
        }
        _ => (false, &segments[..]),
    };
    let [owner, name, action, revision, file @ ..] = rest else {
        return Answer::error(404, None, "Not Found");
    };
    let id = format!("{owner}/{name}");
    let Some(repo) = s.repos.iter().find(|r| r.id == id) else {
        return repo_not_found(who);
    };
    if repo.private && who.is_none() {
        return repo_not_found(who);
    }
    if *revision != repo.branch && *revision != repo.commit {
        return Answer::error(
            404,
            Some("RevisionNotFound"),
            &format!("Invalid rev id: {revision}"),
        );
    }
    match (api, action.as_str()) {
        (true, "revision") if file.is_empty() => Answer::json(&info(repo)),
        (true, "tree") if file.is_empty() => tree(s, repo, revision, &query),
        (false, "resolve") if !file.is_empty() => {
            let range = headers.get("range").map(String::as_str);
            resolve(s, repo, &file.join("/"), who, range)
        }
        _ => Answer::error(404, None, "Not Found"),
    }
}

fn repo_not_found(who: Option<bool>) -> Answer {
    let status = if who.is_some() { 404 } else { 401 };
    Answer::error(status, Some("RepoNotFound"), "Repository not found")
}

fn info(repo: &Repo) -> serde_json::Value {
    let siblings: Vec<_> = repo
        .files
        .iter()
        .map(|f| serde_json::json!({ "rfilename": f.path }))
        .collect();
    serde_json::json!({
        "_id": "0123456789abcdef01234567",
        "id": repo.id,
        "modelId": repo.id,
        "author": repo.id.split('/').next(),
        "sha": repo.commit,
        "lastModified": "2026-01-01T00:00:00.000Z",
        "private": repo.private,
        "gated": repo.gated.is_some().then_some("auto").map_or(serde_json::json!(false), |g| serde_json::json!(g)),
        "disabled": false,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "library_name": "sentence-transformers",
        "createdAt": "2026-01-01T00:00:00.000Z",
        "siblings": siblings,
    })
}

// The tree, folders included as the Hub lists them, `page_size` entries a page, the next
// page's cursor in `Link`.
fn tree(s: &State, repo: &Repo, revision: &str, query: &HashMap<&str, &str>) -> Answer {
    let mut entries: Vec<(String, serde_json::Value)> = Vec::new();
    let mut folders = std::collections::BTreeSet::new();
    for f in &repo.files {
        let mut parts: Vec<&str> = f.path.split('/').collect();
        parts.pop();
        for i in 1..=parts.len() {
            folders.insert(parts[..i].join("/"));
        }
        let mut entry = serde_json::json!({
            "type": "file",
            "oid": f.git_oid(),
            "size": f.bytes.len(),
            "path": f.path,
        });
        if f.lfs {
            entry["lfs"] = serde_json::json!({
                "oid": f.sha256(),
                "size": f.bytes.len(),
                "pointerSize": 134,
            });
        }
        entries.push((f.path.clone(), entry));
    }
    for folder in folders {
        let entry = serde_json::json!({
            "type": "directory",
            "oid": "0000000000000000000000000000000000000000",
            "size": 0,
            "path": folder,
        });
        entries.push((folder, entry));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let start: usize = query
        .get("cursor")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let end = (start + s.page_size).min(entries.len());
    let page: Vec<_> = entries[start.min(end)..end]
        .iter()
        .map(|e| e.1.clone())
        .collect();
    let mut answer = Answer::json(&serde_json::Value::Array(page));
    if end < entries.len() || s.looping {
        let end = if s.looping { s.page_size } else { end };
        let link = format!(
            "<{}/api/models/{}/tree/{revision}?recursive=true&expand=false&cursor={end}>; rel=\"next\"",
            s.next_origin.as_ref().unwrap_or(&s.hub_url),
            repo.id
        );
        answer.headers.push(("Link".into(), link));
    }
    answer
}

fn resolve(s: &State, repo: &Repo, path: &str, who: Option<bool>, range: Option<&str>) -> Answer {
    match (repo.gated, who) {
        (Some(_), None) => {
            let message = format!(
                "Access to model {} is restricted. You must have access to it and be authenticated to access it. Please log in.",
                repo.id
            );
            return Answer::error(401, Some("GatedRepo"), &message);
        }
        (Some(false), Some(_)) => {
            let message = format!(
                "Access to model {} is restricted and you are not in the authorized list. Visit https://huggingface.co/{} to ask for access.",
                repo.id, repo.id
            );
            return Answer::error(403, Some("GatedRepo"), &message);
        }
        _ => {}
    }
    let Some(file) = repo.files.iter().find(|f| f.path == path) else {
        return Answer::error(404, Some("EntryNotFound"), "Entry not found");
    };
    let mut headers = vec![
        ("X-Repo-Commit".to_string(), repo.commit.clone()),
        ("Accept-Ranges".to_string(), "bytes".to_string()),
    ];
    if file.lfs {
        let sha = file.sha256();
        headers.extend([
            ("ETag".to_string(), format!("W/\"{}\"", file.git_oid())),
            ("X-Linked-Etag".to_string(), format!("\"{sha}\"")),
            ("X-Linked-Size".to_string(), file.bytes.len().to_string()),
            (
                "Location".to_string(),
                format!("{}/repos/{sha}?X-Amz-Signature=mrsi-signed", s.storage_url),
            ),
        ]);
        return Answer {
            status: 302,
            headers,
            body: Vec::new(),
        };
    }
    headers.push(("ETag".into(), format!("\"{}\"", file.git_oid())));
    headers.push(("Content-Type".into(), "application/octet-stream".into()));
    // The Hub serves ranges of git files too.
    let len = file.bytes.len() as u64;
    match range.and_then(|r| parse_range(r, len)) {
        Some((start, end)) => {
            let content_range = format!("bytes {start}-{}/{len}", end - 1);
            headers.push(("Content-Range".into(), content_range));
            Answer {
                status: 206,
                headers,
                body: file.bytes[start as usize..end as usize].to_vec(),
            }
        }
        None => Answer {
            status: 200,
            headers,
            body: file.bytes.to_vec(),
        },
    }
}

// The storage host: blobs by SHA-256, with ranges; it needs no credentials and records any.
fn serve_storage(mut stream: TcpStream, state: &Mutex<State>) {
    let Some((method, target, headers)) = read_head(&stream) else {
        return;
    };
    let path = target.split('?').next().unwrap_or("");
    let sha = path.strip_prefix("/repos/").unwrap_or("").to_string();
    let (bytes, cut) = {
        let mut s = state.lock().unwrap();
        s.seen.push(Seen {
            server: "storage",
            method: method.clone(),
            target: target.clone(),
            headers: headers.clone(),
        });
        let file = s
            .repos
            .iter()
            .flat_map(|r| r.files.iter())
            .find(|f| f.lfs && f.sha256() == sha)
            .map(|f| f.bytes.clone());
        let bytes = match (s.tampered.get(&sha), file) {
            (Some(t), Some(_)) => Some(Arc::new(t.clone())),
            (_, file) => file,
        };
        let cut = match s.cut_after {
            Some(n) if !s.cut_done.contains(&sha) => {
                s.cut_done.push(sha.clone());
                Some(n)
            }
            _ => None,
        };
        (bytes, cut)
    };
    let Some(bytes) = bytes else {
        return Answer::error(404, None, "NoSuchKey").send(&stream, method == "HEAD");
    };
    let len = bytes.len() as u64;
    let (status, start, end) = match headers.get("range").and_then(|r| parse_range(r, len)) {
        Some((a, b)) => (206, a, b),
        None => (200, 0, len),
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nETag: \"{sha}\"\r\nConnection: close\r\n",
        if status == 206 {
            "Partial Content"
        } else {
            "OK"
        },
        end - start,
    );
    if status == 206 {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{len}\r\n",
            end - 1
        ));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    if method == "HEAD" {
        return;
    }
    let body = &bytes[start as usize..end as usize];
    let body = match cut {
        Some(n) if (n as usize) < body.len() => &body[..n as usize],
        _ => body,
    };
    let _ = stream.write_all(body);
}

// `bytes=A-B` or `bytes=A-` within `len`: the half-open range.
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let (a, b) = value.strip_prefix("bytes=")?.split_once('-')?;
    let a: u64 = a.parse().ok()?;
    let b: u64 = if b.is_empty() {
        len - 1
    } else {
        b.parse().ok()?
    };
    (a <= b && a < len).then(|| (a, b.min(len - 1) + 1))
}

/// One download by the real `huggingface_hub`.
pub struct ClientCase<'a> {
    pub repo: &'a str,
    pub revision: Option<&'a str>,
    pub dest: &'a Path,
    pub token: Option<&'a str>,
}

// snapshot_download for each case; prints the outcome of each: "ok" or the exception's class.
const CLIENT: &str = r#"
import json, sys
from huggingface_hub import snapshot_download
out = []
for case in json.load(sys.stdin):
    try:
        snapshot_download(case["repo"], revision=case["revision"], local_dir=case["dest"],
                          token=case["token"] or False)
        out.append("ok")
    except Exception as e:
        out.append(type(e).__name__)
print(json.dumps(out))
"#;

/// Runs `huggingface_hub` (installed by `.ci/install-test-servers`) against `endpoint`, with a
/// cleared environment: each case's outcome, "ok" or the exception's class name.
pub fn hub_client(endpoint: &str, cases: &[ClientCase<'_>]) -> Vec<String> {
    use std::process::{Command, Stdio};
    let sdk = super::s3::servers_dir().join("hub-py-2.4.0");
    assert!(
        sdk.join("huggingface_hub").is_dir(),
        "{} is not installed: run `bash .ci/install-test-servers`",
        sdk.display()
    );
    let home = super::TempDir::new("hf-home");
    let job: Vec<_> = cases
        .iter()
        .map(|c| {
            serde_json::json!({
                "repo": c.repo,
                "revision": c.revision,
                "dest": c.dest,
                "token": c.token,
            })
        })
        .collect();
    let mut child = Command::new("python3")
        .args(["-c", CLIENT])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PYTHONPATH", &sdk)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HOME", home.path())
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::Value::Array(job).to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "huggingface_hub failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "huggingface_hub printed no result ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
