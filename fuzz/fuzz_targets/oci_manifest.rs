#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mr_storage_initializer::fuzzing::oci_manifest(data));
