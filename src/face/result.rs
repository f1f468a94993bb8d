//! The result a machine can read: one JSON object, on success and on failure, written to the
//! container's termination message file (`/dev/termination-log` when it exists and is
//! writable; `MRSI_RESULT_FILE` names another), and on stdout with `--json`. Kubernetes shows
//! it in the pod's status (`state.terminated.message`) and caps it at 4096 bytes, so it is
//! built to fit: the per-file digests are listed while they fit and counted when they do not,
//! and long values are cut before anything else is dropped.
//!
//! ```json
//! {"status":"succeeded","seconds":1.02,"files":2,"bytes":5120,"downloads":[
//!   {"source":"model-registry://iris","dest":"/mnt/models",
//!    "model_registry":{"registry_url":"...","model_name":"iris","model_id":"1",
//!      "version_name":"v2","version_id":"2","artifact_id":"12","artifact_uri":"s3://m/iris/"},
//!    "files":2,"bytes":5120,"written":2,"skipped":0,"seconds":0.98,
//!    "digest":"sha256:...","sha256":{"config.json":"...","model.onnx":"..."}}]}
//! ```
//!
//! URIs are shown as in the log: no query string, no password (`error::redact_url`). The
//! digest of a download is `engine::verify::of_download` over its files' SHA-256, present only
//! when they were computed (pinned digests, or `MRSI_SHA256`). An `oci://` download also has
//! `manifest_digest`, the `sha256:...` of the manifest its files came from, once it was
//! resolved (a failed download included).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::Outcome;
use crate::digest::hex;
use crate::engine::verify::of_download;
use crate::error::{Error, one_line, redact_url};

/// Kubernetes' cap on a termination message, in bytes.
pub(crate) const LIMIT: usize = 4096;
/// The variable that names the file the result is written to.
pub(crate) const FILE_VAR: &str = "MRSI_RESULT_FILE";
const DEFAULT_FILE: &str = "/dev/termination-log";
// Each long value is cut to this many characters when the result would not fit otherwise.
const CUT: usize = 256;

/// The result of a run as one JSON object of at most `LIMIT` bytes.
pub(crate) fn render(outcomes: &[Outcome], error: Option<&Error>, seconds: f64) -> String {
    for cut in [None, Some(CUT), Some(CUT / 4)] {
        let mut value = build(outcomes, error, seconds, cut);
        let base = serde_json::to_string(&value).expect("JSON").len();
        if base > LIMIT {
            continue;
        }
        add_digests(&mut value, outcomes, LIMIT - base);
        let text = serde_json::to_string(&value).expect("JSON");
        if text.len() <= LIMIT {
            return text;
        }
        // Miscounted: without the lists it fit.
        return serde_json::to_string(&build(outcomes, error, seconds, cut)).expect("JSON");
    }
    // Only a pathological count of pairs gets here: the totals and the error alone.
    let mut value = json!({
        "status": status(error),
        "seconds": round(seconds),
        "downloads_omitted": outcomes.len(),
    });
    if let Some(e) = error {
        value["error"] = Value::String(cut_to(&one_line(&e.to_string()), CUT));
    }
    serde_json::to_string(&value).expect("JSON")
}

fn status(error: Option<&Error>) -> &'static str {
    match error {
        None => "succeeded",
        Some(_) => "failed",
    }
}

fn round(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

fn cut_to(text: &str, cut: usize) -> String {
    match text.char_indices().nth(cut) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

// The object without the per-file digests; every free-text value cut to `cut` characters.
fn build(outcomes: &[Outcome], error: Option<&Error>, seconds: f64, cut: Option<usize>) -> Value {
    let text = |s: &str| Value::String(cut.map_or_else(|| s.to_string(), |n| cut_to(s, n)));
    let downloads: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            let mut d = Map::new();
            d.insert("source".into(), text(&o.source));
            d.insert("dest".into(), text(&o.dest.to_string_lossy()));
            if let Some(r) = &o.resolution {
                d.insert(
                    "model_registry".into(),
                    json!({
                        "registry_url": text(&redact_url(&r.registry_url)),
                        "model_name": text(&r.model_name),
                        "model_id": text(&r.model_id),
                        "version_name": text(&r.version_name),
                        "version_id": text(&r.version_id),
                        "artifact_id": text(&r.artifact_id),
                        "artifact_uri": text(&redact_url(&r.artifact_uri)),
                    }),
                );
            }
            if let Some(s) = &o.summary {
                d.insert("files".into(), s.paths.len().into());
                d.insert("bytes".into(), s.bytes.into());
                d.insert("written".into(), s.written.into());
                d.insert("skipped".into(), s.skipped.into());
                d.insert("seconds".into(), round(s.seconds).into());
                if !s.sha256.is_empty() {
                    let digest = of_download(&s.sha256);
                    d.insert("digest".into(), format!("sha256:{}", hex(&digest)).into());
                }
            }
            if let Some(n) = o.extracted {
                d.insert("extracted".into(), n.into());
            }
            // A content address, not free text: never cut.
            if let Some(digest) = &o.manifest_digest {
                d.insert("manifest_digest".into(), digest.as_str().into());
            }
            Value::Object(d)
        })
        .collect();
    let summaries = outcomes.iter().filter_map(|o| o.summary.as_ref());
    let files: usize = summaries.clone().map(|s| s.paths.len()).sum();
    let bytes: u64 = summaries.map(|s| s.bytes).sum();
    let mut value = json!({
        "status": status(error),
        "seconds": round(seconds),
        "files": files,
        "bytes": bytes,
        "downloads": downloads,
    });
    if let Some(e) = error {
        value["error"] = text(&one_line(&e.to_string()));
    }
    value
}

// Adds each download's `sha256` map, entry by entry while `room` bytes last, and counts the
// entries left out in `sha256_omitted`; nothing when even the empty maps would not fit.
fn add_digests(value: &mut Value, outcomes: &[Outcome], mut room: usize) {
    // `,"sha256":{}` and `,"sha256_omitted":NNNNNNN`, per download with digests.
    const FRAME: usize = 12 + 27;
    let Some(downloads) = value["downloads"].as_array_mut() else {
        return;
    };
    let hashed = |o: &Outcome| o.summary.as_ref().is_some_and(|s| !s.sha256.is_empty());
    let frames = FRAME * outcomes.iter().filter(|o| hashed(o)).count();
    if frames > room {
        return;
    }
    room -= frames;
    for (d, o) in downloads.iter_mut().zip(outcomes) {
        let Some(summary) = o.summary.as_ref().filter(|s| !s.sha256.is_empty()) else {
            continue;
        };
        let mut map = Map::new();
        let mut omitted = 0;
        for (path, digest) in &summary.sha256 {
            // `"PATH":"HEX",`
            let len = serde_json::to_string(path).expect("JSON").len() + 64 + 4;
            if omitted == 0 && len <= room {
                room -= len;
                map.insert(path.clone(), hex(digest).into());
            } else {
                omitted += 1;
            }
        }
        d["sha256"] = Value::Object(map);
        if omitted > 0 {
            d["sha256_omitted"] = omitted.into();
        }
    }
}

/// Where the result goes: `MRSI_RESULT_FILE`, else `/dev/termination-log` when it exists.
pub(crate) fn path(var: Option<String>) -> Option<(PathBuf, bool)> {
    match var.filter(|v| !v.trim().is_empty()) {
        Some(path) => Some((PathBuf::from(path), true)),
        None => Path::new(DEFAULT_FILE)
            .exists()
            .then(|| (PathBuf::from(DEFAULT_FILE), false)),
    }
}

/// Writes `text` to `path`; a file named by the variable is created if missing, the default
/// one only written when it exists. A failure is a warning: the run's own outcome stands.
///
/// The path is the pod spec's, and what is there is written as a shell's `>` would: a
/// symbolic link is followed (whoever can put one there could write the file itself), a FIFO
/// or a device is written as it is. Opening never blocks: a FIFO nobody reads is a warning,
/// not a finished run that never ends.
pub(crate) fn write(path: &Path, named: bool, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let written = OpenOptions::new()
        .write(true)
        .truncate(true)
        .create(named)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    match written {
        Ok(()) => log::debug!("wrote the result to {}", path.display()),
        Err(e) if named => log::warn!("cannot write the result to {}: {e}", path.display()),
        Err(e) => log::debug!("cannot write the result to {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Summary;
    use crate::registry::resolve::Resolution;

    fn outcome(files: usize, name_len: usize) -> Outcome {
        let sha256 = (0..files)
            .map(|i| (format!("{}{i:05}", "n".repeat(name_len)), [i as u8; 32]))
            .collect();
        Outcome {
            source: "s3://bucket/model".into(),
            dest: "/mnt/models".into(),
            resolution: None,
            summary: Some(Summary {
                paths: (0..files).map(|i| PathBuf::from(format!("f{i}"))).collect(),
                written: files,
                bytes: 10,
                seconds: 0.5,
                sha256,
                ..Summary::default()
            }),
            extracted: None,
            manifest_digest: None,
        }
    }

    #[test]
    fn a_small_result_lists_every_digest() {
        let text = render(&[outcome(3, 1)], None, 1.23456);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["status"], "succeeded");
        assert_eq!(v["seconds"], 1.235);
        assert_eq!(v["files"], 3);
        let d = &v["downloads"][0];
        assert_eq!(d["sha256"].as_object().unwrap().len(), 3);
        assert!(d.get("sha256_omitted").is_none());
        assert!(d["digest"].as_str().unwrap().starts_with("sha256:"));
    }

    #[test]
    fn a_large_result_stays_under_the_cap() {
        for (files, name_len) in [(40, 10), (1000, 200), (100_000, 1)] {
            let text = render(&[outcome(files, name_len), outcome(5, 1)], None, 1.0);
            assert!(text.len() <= LIMIT, "{files}: {} bytes", text.len());
            let v: Value = serde_json::from_str(&text).unwrap();
            let d = &v["downloads"][0];
            let listed = d["sha256"].as_object().map_or(0, |m| m.len());
            let omitted = d["sha256_omitted"].as_u64().unwrap_or(0) as usize;
            assert_eq!(listed + omitted, files);
            assert_eq!(omitted > 0, files > 40, "{files}: {omitted} omitted");
            // The digest of the whole download is always there.
            assert!(d["digest"].is_string());
            assert!(v["downloads"][1]["digest"].is_string());
        }
    }

    #[test]
    fn long_values_are_cut_to_fit() {
        let mut o = outcome(1, 1);
        o.source = format!("s3://bucket/{}", "k".repeat(10_000));
        o.resolution = Some(Resolution {
            registry_url: "http://mr:8080".into(),
            model_name: "m".repeat(5000),
            model_id: "1".into(),
            version_name: "v".into(),
            version_id: "2".into(),
            artifact_id: "3".into(),
            artifact_uri: "https://h/x?sig=SECRET".into(),
        });
        let manifest = format!("sha256:{}", "ab".repeat(32));
        o.manifest_digest = Some(manifest.clone());
        let error = Error::Empty {
            uri: "x".repeat(9000),
        };
        let text = render(&[o], Some(&error), 1.0);
        assert!(text.len() <= LIMIT, "{} bytes", text.len());
        assert!(!text.contains("SECRET"));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["status"], "failed");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .starts_with("nothing to download")
        );
        assert_eq!(
            v["downloads"][0]["model_registry"]["artifact_uri"],
            "https://h/x?<redacted>"
        );
        // A content address is kept whole while free text is cut.
        assert_eq!(v["downloads"][0]["manifest_digest"], manifest);
        // A hostile registry's values: control characters (six bytes each in JSON) and
        // four-byte characters, in every field and in the file names.
        let hostile = |n: usize| "\u{1}😀\"".repeat(n);
        let mut o = outcome(50, 300);
        o.source = hostile(3000);
        o.dest = hostile(3000).into();
        o.resolution = Some(Resolution {
            registry_url: hostile(3000),
            model_name: hostile(3000),
            model_id: hostile(3000),
            version_name: hostile(3000),
            version_id: hostile(3000),
            artifact_id: hostile(3000),
            artifact_uri: hostile(3000),
        });
        if let Some(s) = o.summary.as_mut() {
            for (path, _) in &mut s.sha256 {
                *path = hostile(500);
            }
        }
        let error = Error::Empty { uri: hostile(3000) };
        let text = render(&[o], Some(&error), 1.0);
        assert!(text.len() <= LIMIT, "{} bytes", text.len());
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["status"], "failed");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .starts_with("nothing to download")
        );
        let many: Vec<Outcome> = (0..200).map(|_| outcome(1, 1)).collect();
        assert!(render(&many, Some(&error), 1.0).len() <= LIMIT);
    }
}
