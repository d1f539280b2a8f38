//! The request bodies the controller parses before authentication: `/authenticate` JSON,
//! `erott` enrollment JSON with its CSRs, and `ott` enrollment PEM CSRs.
//!
//! The entry point exists only under `cargo fuzz` (`--cfg fuzzing`); a plain workspace
//! build makes an empty binary.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weft_controller::fuzzing::unauth_bodies(data);
});

#[cfg(not(fuzzing))]
fn main() {}
