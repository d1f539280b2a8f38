//! The router's TLS session after the handshake on what a hostile client sends: raw
//! bytes, and records sealed under the client's own key with any content type and
//! contents, interleaved with the session's own sealing.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weft_router::tls::fuzzing::records(data);
});
