//! Streaming frame decoder and edge message parsers on arbitrary bytes.
//!
//! The entry point exists only under `cargo fuzz` (`--cfg fuzzing`); a plain workspace
//! build makes an empty binary.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weft_wire::fuzzing::decode_stream(data);
});

#[cfg(not(fuzzing))]
fn main() {}
