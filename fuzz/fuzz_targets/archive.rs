#![no_main]
//! Each input is extracted in a scratch folder of this process's own under the system's
//! temporary folder; its first byte picks the format (`fuzzing::archive`).
use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

static SCRATCH: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("mrsi-fuzz-archive-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the scratch folder");
    dir
});

fuzz_target!(|data: &[u8]| mr_storage_initializer::fuzzing::archive(data, &SCRATCH));
