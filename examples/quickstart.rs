//! The quickstart: the real pipeline against a registry on 127.0.0.1, no cluster needed.
//!
//! Starts the replay registry with the `iris` fixtures (`fixtures/registry/iris`), resolves
//! `model-registry://iris` through it exactly as the binary does, and prints the resolution
//! and the request sequence. Downloads come with the storage backends; until then this stops
//! after resolving.
//!
//!     cargo run --example quickstart

// The tests use more of the replay server than the quickstart does.
#[allow(dead_code)]
#[path = "../tests/support/replay.rs"]
mod replay;

use mr_storage_initializer::settings::Settings;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let registry = replay::Replay::start("iris");
    let base = registry.authority();
    println!("model registry (replayed fixtures/registry/iris) on http://{base}");

    let settings = Settings::from_lookup(|k| match k {
        "MODEL_REGISTRY_BASE_URL" => Some(base.clone()),
        _ => None,
    })
    .expect("settings");
    let uri = "model-registry://iris";
    match mr_storage_initializer::resolve_uri(uri, &settings) {
        Ok(r) => {
            println!("{uri} resolved:");
            println!("{}", serde_json::to_string_pretty(&r).expect("json"));
            println!("requests the registry saw:");
            for key in registry.keys() {
                println!("  {key}");
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
