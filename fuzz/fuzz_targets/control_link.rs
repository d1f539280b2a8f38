//! Control-channel messages (protobuf bodies) and link messages on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weft_wire::fuzzing::control_and_link(data);
});
