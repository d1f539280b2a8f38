//! The controller's ZitiQL `filter`/`sort` parser and evaluator on arbitrary text (any
//! administrator, and through list endpoints any session, can send one).
//!
//! The entry point exists only under `cargo fuzz` (`--cfg fuzzing`); a plain workspace
//! build makes an empty binary.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weft_controller::fuzzing::filter(data);
});

#[cfg(not(fuzzing))]
fn main() {}
