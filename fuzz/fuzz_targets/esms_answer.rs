//! Fuzz target: see `oapkg::fuzz::esms_answer` for what it reads and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| oapkg::fuzz::esms_answer(data));
