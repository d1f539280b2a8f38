//! The router's TLS session after the handshake on what a hostile client sends: raw
//! bytes, and records sealed under the client's own key with any content type and
//! contents, interleaved with the session's own sealing.
//!
//! The router has this entry point only under `cargo fuzz` (`--cfg fuzzing`); a plain
//! workspace build makes an empty binary.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weft_router::tls::fuzzing::records(data);
});

#[cfg(not(fuzzing))]
fn main() {}
