//! The quickstart: the whole job on 127.0.0.1, no cluster and no cloud account.
//!
//! Starts two servers from `fixtures/`: a Model Registry replaying `fixtures/registry/quickstart`
//! and an artifact server for `fixtures/artifacts`. Then runs the real pipeline on
//! `model-registry://iris`: look up the model, pick its newest version and newest model
//! artifact (an `.tar.gz` over HTTP), download it into `./models`, extract it. Prints what it
//! did.
//!
//!     cargo run --example quickstart

// The tests use more of these servers than the quickstart does.
#[allow(dead_code)]
#[path = "../tests/support/replay.rs"]
mod replay;
#[allow(dead_code)]
#[path = "../tests/support/server.rs"]
mod server;
#[allow(dead_code)]
#[path = "../tests/support/web.rs"]
mod web;

use std::path::Path;

use mr_storage_initializer::Options;
use mr_storage_initializer::Pair;
use mr_storage_initializer::Progress;
use mr_storage_initializer::Settings;

fn main() {
    mr_storage_initializer::init_logging();

    let (files, registry) = replay::with_artifacts("quickstart");
    println!(
        "model registry on {} (fixtures/registry/quickstart)",
        registry.url()
    );
    println!("artifact server on {} (fixtures/artifacts)", files.url());

    let settings = Settings::from_lookup(|k| match k {
        "MODEL_REGISTRY_BASE_URL" => Some(registry.authority()),
        _ => None,
    })
    .expect("settings");
    let dest = Path::new("models");
    let pairs = [Pair {
        src: "model-registry://iris".into(),
        dest: dest.to_path_buf(),
    }];
    println!("\nmr-storage-initializer model-registry://iris ./models");
    if let Err(e) =
        mr_storage_initializer::run(&pairs, &Options::default(), &settings, &Progress::default())
    {
        eprintln!("error: {e}");
        std::process::exit(1);
    }

    println!("\nthe registry answered:");
    for key in registry.keys() {
        println!("  {key}");
    }
    println!("the artifact server answered:");
    for seen in files.seen() {
        let range = seen
            .headers
            .get("range")
            .map_or(String::new(), |r| format!(" ({r})"));
        println!("  GET {}{range}", seen.path);
    }
    println!("./models now holds:");
    let mut entries: Vec<_> = std::fs::read_dir(dest)
        .expect("read ./models")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!("  {size:>8}  {}", path.display());
    }
}
