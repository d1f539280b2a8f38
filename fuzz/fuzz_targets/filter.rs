//! The controller's ZitiQL `filter`/`sort` parser and evaluator on arbitrary text (any
//! administrator, and through list endpoints any session, can send one).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weft_controller::fuzzing::filter(data);
});
