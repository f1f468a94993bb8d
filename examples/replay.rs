//! Serves one recorded registry scenario on 127.0.0.1 until killed, for trying the binary by
//! hand (`--resolve`) or from a script. Prints `http://127.0.0.1:PORT` on its first line.
//!
//!     cargo run --example replay -- iris
//!     MODEL_REGISTRY_BASE_URL=127.0.0.1:PORT mr-storage-initializer --resolve model-registry://iris

// The tests use more of the replay server than this example does.
#[allow(dead_code)]
#[path = "../tests/support/replay.rs"]
mod replay;

use std::io::Write;

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_else(|| "iris".into());
    let server = replay::Replay::start(&scenario);
    println!("{}", server.url());
    std::io::stdout().flush().expect("stdout");
    loop {
        std::thread::park();
    }
}
