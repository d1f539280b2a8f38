//! Streaming frame decoder and edge message parsers on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weft_wire::fuzzing::decode_stream(data);
});
