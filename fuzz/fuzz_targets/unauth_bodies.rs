//! The request bodies the controller parses before authentication: `/authenticate` JSON,
//! `erott` enrollment JSON with its CSRs, and `ott` enrollment PEM CSRs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weft_controller::fuzzing::unauth_bodies(data);
});
