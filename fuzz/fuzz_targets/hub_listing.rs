#![no_main]
use libfuzzer_sys::fuzz_target;
use mr_storage_initializer::fuzzing::{Listing, listing};

fuzz_target!(|data: &[u8]| listing(Listing::Hub, data));
