//! Control-channel messages (protobuf bodies) and link messages on arbitrary bytes.
//!
//! The entry point exists only under `cargo fuzz` (`--cfg fuzzing`); a plain workspace
//! build makes an empty binary.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weft_wire::fuzzing::control_and_link(data);
});

#[cfg(not(fuzzing))]
fn main() {}
