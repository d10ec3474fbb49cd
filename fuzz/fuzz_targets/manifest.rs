//! Fuzz target: see `oapkg::fuzz::manifest` for what it reads and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oapkg::fuzz::manifest(data));
