//! The fuzz targets' entry points: each takes arbitrary bytes, runs one parser or stage that
//! reads hostile input, and panics only when an invariant the rest of the program relies on
//! fails. `fuzz/` drives them with libFuzzer (`cargo fuzz`), and the integration test
//! `fuzz_corpora` replays every saved input through them on each `cargo test`, so what a
//! fuzzer once found stays fixed.
//!
//! These are the deliberate exception to "everything is `pub(crate)`": a fuzz crate is a
//! separate crate and can reach only what is public. Nothing else calls them, so the release
//! binary does not carry them.

use std::collections::HashSet;
use std::fs;
use std::path::{Component, Path};

use crate::engine::archive::{self, Format};
use crate::engine::plan;
use crate::error::Error;
use crate::fetch::{self, Page};
use crate::registry::client::{Artifact, List, ModelVersion, RegisteredModel};
use crate::registry::select;
use crate::uri::{self, BaseUrl, RegistryUri};

/// The longest error line any input may produce: each quoted value is clipped, so a line is
/// short whatever the input (a 100 KB URI included).
const MAX_LINE: usize = 2048;

/// An error as the user sees it: one line, no raw control characters, bounded.
fn check_line(err: &Error) {
    let line = crate::error::one_line(&err.to_string());
    assert!(
        !line.chars().any(|c| c.is_control()),
        "control character in error line: {line:?}"
    );
    assert!(line.len() <= MAX_LINE, "error line of {} bytes", line.len());
}

/// URIs: the `model-registry://` grammar, the storage schemes, the artifact URI policy, base
/// URLs and percent-coding.
pub fn uri(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    match RegistryUri::parse(text) {
        Ok(_) => {
            let _ = uri::unknown_parameters(text);
        }
        Err(e) => check_line(&e),
    }
    if let Err(e) = crate::policy::check(text, None) {
        check_line(&e);
    }
    let allowed = ["s3://models/".to_string(), "file:///models".to_string()];
    if crate::policy::check(text, Some(&allowed)).is_ok() {
        assert!(
            allowed.iter().any(|p| text.starts_with(p.as_str())),
            "allowed outside the prefixes: {text:?}"
        );
    }
    let _ = fetch::can_fetch(text);
    for scheme in ["s3", "gs"] {
        if let Err(e) = fetch::bucket_uri(text, scheme) {
            check_line(&e);
        }
    }
    let _ = fetch::azure::parse_uri(text);
    if let Err(e) = fetch::hf::HfUri::parse(text) {
        check_line(&e);
    }
    match fetch::oci::Reference::parse(text) {
        // Nothing in a reference can reshape the request paths built from it.
        Ok(r) => {
            assert!(
                !r.registry.is_empty()
                    && r.registry
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b)),
                "registry {:?}",
                r.registry
            );
            let path = format!("{}/manifests/{}", r.repository, r.manifest_ref());
            assert!(
                path.split('/')
                    .all(|c| !c.is_empty() && c != "." && c != "..")
                    && path
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"/._-:".contains(&b)),
                "request path {path:?}"
            );
        }
        Err(e) => check_line(&e),
    }
    if let Ok(base) = BaseUrl::parse(text, "http") {
        let _ = base.api("/api/model_registry/v1alpha3/registered_models");
    }
    // Decoding what was encoded gives back the text.
    let encoded = uri::percent_encode(text);
    assert_eq!(uri::percent_decode(&encoded).as_deref(), Ok(text));
    let _ = uri::percent_decode(text);
    let _ = crate::error::redact_url(text);
}

/// The registry's JSON answers and the choice of the newest version and model artifact.
pub fn registry_json(data: &[u8]) {
    if let Ok(model) = serde_json::from_slice::<RegisteredModel>(data) {
        let _ = model.name.len();
    }
    if let Ok(list) = serde_json::from_slice::<List<ModelVersion>>(data)
        && let Ok(choice) = select::newest_version(&list.items)
    {
        assert!(choice.archived <= list.items.len());
        if let Some(i) = choice.newest {
            assert_ne!(list.items[i].state.as_deref(), Some("ARCHIVED"));
        }
        let last = list
            .items
            .last()
            .and_then(|v| v.create_time_since_epoch.as_deref());
        let chosen = choice
            .newest
            .and_then(|i| list.items[i].create_time_since_epoch.as_deref());
        let _ = select::needs_next_page(last, chosen);
    }
    if let Ok(list) = serde_json::from_slice::<List<Artifact>>(data)
        && let Ok(select::ArtifactChoice::Found(i)) = select::newest_model_artifact(&list.items)
    {
        let chosen = &list.items[i];
        assert_eq!(chosen.artifact_type.as_deref(), Some("model-artifact"));
        assert!(!chosen.uri.as_deref().unwrap_or("").trim().is_empty());
    }
}

/// An OCI manifest or index as a registry sends it (the first line, up to a NUL, is the
/// answer's Content-Type; the rest the manifest's bytes), read as `oci://` reads it: an index
/// names one entry by a valid digest; a manifest's files plan inside `DEST_DIR`, and its tar
/// layers are pinned by digest and keep no folder but the model folder.
pub fn oci_manifest(data: &[u8]) {
    let (content_type, text) = match data.iter().position(|&b| b == 0) {
        Some(i) => (Some(String::from_utf8_lossy(&data[..i])), &data[i + 1..]),
        None => (None, data),
    };
    let text = String::from_utf8_lossy(text);
    let content_type = content_type.map(|t| t.into_owned());
    let read = fetch::oci::read_manifest(
        &text,
        content_type,
        "linux/amd64",
        "models",
        "oci://r.example/m:v1",
    );
    match read {
        Err(e) => check_line(&e),
        Ok(fetch::oci::Next::Entry(name, digest)) => {
            assert_eq!(name, format!("sha256:{}", crate::digest::hex(&digest)));
        }
        Ok(fetch::oci::Next::Contents(files, layers)) => {
            for layer in &layers {
                assert!(
                    layer.within.is_empty() || layer.within == "models",
                    "within {:?}",
                    layer.within
                );
                assert_eq!(
                    layer.key,
                    format!("sha256:{}", crate::digest::hex(&layer.sha256))
                );
            }
            if let Ok(planned) = plan::plan("", fetch::oci::objects(&files)) {
                check_planned(&planned);
            }
        }
    }
}

// Every planned path is plain and relative (it stays inside `DEST_DIR`), and no two files
// share one.
fn check_planned(planned: &[plan::Planned]) {
    let mut paths = HashSet::new();
    for file in planned {
        let path = file.path();
        assert!(
            path.components().all(|c| matches!(c, Component::Normal(_))),
            "unsafe path planned: {path:?}"
        );
        assert!(paths.insert(path.to_path_buf()), "two files at {path:?}");
    }
}

/// Which listing format `listing` reads.
#[derive(Debug, Clone, Copy)]
pub enum Listing {
    /// S3's ListObjectsV2 XML.
    S3,
    /// Azure Blob's List Blobs XML.
    Azure,
    /// GCS's objects.list JSON.
    Gcs,
    /// The Hugging Face Hub's tree JSON.
    Hub,
}

/// One page of a listing, then the plan of what it lists: whatever the keys, every planned
/// path stays inside `DEST_DIR` and no two files share one.
pub fn listing(kind: Listing, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let page: Result<Page, String> = match kind {
        Listing::S3 => fetch::s3::parse_page(&text),
        Listing::Azure => fetch::azure::parse_page(&text),
        Listing::Gcs => fetch::gcs::parse_page(&text),
        Listing::Hub => serde_json::from_str::<Vec<fetch::hf::TreeEntry>>(&text)
            .map_err(|e| e.to_string())
            .and_then(fetch::hf::objects)
            .map(|objects| Page {
                objects,
                next: None,
            }),
    };
    let Ok(page) = page else { return };
    for prefix in ["", "model", "model/"] {
        if let Ok(planned) = plan::plan(prefix, page.objects.clone()) {
            check_planned(&planned);
        }
    }
}

/// The operator's patterns and pins: `STORAGE_*_PATTERNS` lists and `fnmatch` (which must
/// not backtrack without end: libFuzzer's timeout catches that), a pinned digest and a digest
/// manifest. The input is a pattern, a NUL, then a path.
pub fn patterns(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (pattern, path) = text.split_once('\0').unwrap_or((&text, "config.json"));
    let _ = crate::engine::filter::fnmatch(pattern, path);
    if let Ok(list) = crate::engine::filter::parse_list(pattern) {
        for p in &list {
            let _ = crate::engine::filter::fnmatch(p, path);
        }
    }
    // A digest read back prints as the hex it was read from.
    if let Ok(digest) = crate::engine::verify::parse_digest(pattern) {
        let hex = crate::digest::hex(&digest);
        assert!(pattern.trim().to_ascii_lowercase().ends_with(&hex));
    }
    let _ = crate::engine::verify::parse_manifest(&text);
}

/// Extracts `data` as an archive in a fresh folder under `scratch`, and checks that nothing was
/// written beside the destination and that every link in it stays inside. The first byte picks
/// the format (tar, tar.gz, zip by its value modulo 3); the rest is the archive.
pub fn archive(data: &[u8], scratch: &Path) {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let root = scratch.join("case");
    let _ = fs::remove_dir_all(&root);
    let dest = root.join("dest");
    fs::create_dir_all(&dest).expect("create the scratch folder");
    let (name, format) = match first % 3 {
        0 => ("model.tar", Format::Tar),
        1 => ("model.tar.gz", Format::TarGz),
        _ => ("model.zip", Format::Zip),
    };
    let file = dest.join(name);
    fs::write(&file, data).expect("write the archive");
    if let Err(e) = archive::extract(&file, format, &dest) {
        check_line(&e);
    }
    let beside: Vec<_> = fs::read_dir(&root)
        .expect("read the scratch folder")
        .map(|e| e.expect("read an entry").file_name())
        .collect();
    assert_eq!(beside, ["dest"], "written beside DEST_DIR");
    let inside = dest.canonicalize().expect("resolve DEST_DIR");
    check_inside(&dest, &inside);
    fs::remove_dir_all(&root).expect("remove the scratch folder");
}

/// Every entry under `dir` (links included) resolves inside `inside`, when it resolves at all.
fn check_inside(dir: &Path, inside: &Path) {
    for entry in fs::read_dir(dir).expect("read a folder") {
        let path = entry.expect("read an entry").path();
        if let Ok(real) = path.canonicalize() {
            assert!(real.starts_with(inside), "{path:?} resolves to {real:?}");
        }
        let meta = fs::symlink_metadata(&path).expect("inspect an entry");
        if meta.is_dir() {
            check_inside(&path, inside);
        }
    }
}
