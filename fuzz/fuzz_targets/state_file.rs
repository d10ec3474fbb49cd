//! Fuzz target: see `oapkg::fuzz::state_file` for what it reads and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oapkg::fuzz::state_file(data));
