//! Serves one recorded registry scenario on 127.0.0.1 until killed, for trying the binary by
//! hand (`--resolve`, `--dry-run`, a download) or from a script. Also serves
//! `fixtures/artifacts` over HTTP, so scenarios whose artifacts live there (`quickstart`,
//! `local-artifact`) work. Prints the registry's `http://127.0.0.1:PORT` on its first line.
//!
//!     cargo run --example replay -- quickstart
//!     MODEL_REGISTRY_BASE_URL=127.0.0.1:PORT mr-storage-initializer --dry-run model-registry://iris ./models

// The tests use more of these servers than this example does.
#[allow(dead_code)]
#[path = "../tests/support/replay.rs"]
mod replay;
#[allow(dead_code)]
#[path = "../tests/support/server.rs"]
mod server;
#[allow(dead_code)]
#[path = "../tests/support/web.rs"]
mod web;

use std::io::Write;

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_else(|| "iris".into());
    let (files, registry) = replay::with_artifacts(&scenario);
    println!("{}", registry.url());
    eprintln!("artifact server for fixtures/artifacts: {}", files.url());
    std::io::stdout().flush().expect("stdout");
    loop {
        std::thread::park();
    }
}
