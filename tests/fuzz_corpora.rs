//! Replays every input saved under `fuzz/corpus/TARGET/` through the target's entry point
//! (`mr_storage_initializer::fuzzing`), so what a fuzzer once found, and the inputs that reach
//! deep into each parser, are checked on every `cargo test` without libFuzzer. The fuzzers
//! themselves run with `bash fuzz/run` (README, "Fuzzing").

use std::fs;
use std::path::{Path, PathBuf};

use mr_storage_initializer::fuzzing::{self, Listing};

/// The saved inputs of one target; a target with none is a broken checkout, not a pass.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("read a corpus entry").path();
            let data = fs::read(&path).expect("read a corpus file");
            (path, data)
        })
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 2, "{} holds no corpus", dir.display());
    inputs
}

fn replay(target: &str, run: impl Fn(&[u8])) {
    for (path, data) in corpus(target) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&data)));
        assert!(outcome.is_ok(), "{} fails its target", path.display());
    }
}

#[test]
fn uri_inputs() {
    replay("uri", fuzzing::uri);
}

#[test]
fn registry_json_inputs() {
    replay("registry_json", fuzzing::registry_json);
}

#[test]
fn s3_listing_inputs() {
    replay("s3_listing", |data| fuzzing::listing(Listing::S3, data));
}

#[test]
fn azure_listing_inputs() {
    replay("azure_listing", |data| {
        fuzzing::listing(Listing::Azure, data)
    });
}

#[test]
fn gcs_listing_inputs() {
    replay("gcs_listing", |data| fuzzing::listing(Listing::Gcs, data));
}

#[test]
fn hub_listing_inputs() {
    replay("hub_listing", |data| fuzzing::listing(Listing::Hub, data));
}

#[test]
fn patterns_inputs() {
    replay("patterns", fuzzing::patterns);
}

#[test]
fn archive_inputs() {
    let scratch = crate::support::TempDir::new("fuzz-archive");
    replay("archive", |data| fuzzing::archive(data, scratch.path()));
}

#[test]
fn oci_manifest_inputs() {
    replay("oci_manifest", fuzzing::oci_manifest);
}
