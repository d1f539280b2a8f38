//! Replays the committed corpus of the `decode_frame` fuzz target (fuzz/corpus/) through
//! the same entry point, so every input the fuzzer found interesting stays a regression
//! test in ordinary `cargo test` runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

#[test]
fn decode_frame_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/decode_frame");
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        weft_wire::fuzzing::decode_stream(&data);
        inputs += 1;
    }
    assert!(
        inputs >= 20,
        "corpus at {} has only {inputs} inputs",
        dir.display()
    );
}
