//! Fuzz target: see `oapkg::fuzz::saved_plan` for what it reads and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oapkg::fuzz::saved_plan(data));
