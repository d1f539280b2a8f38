//! Replays the committed corpus of the `tls_records` fuzz target (fuzz/corpus/) through
//! the same entry point, so every input the fuzzer found interesting stays a regression
//! test in ordinary `cargo test` runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

#[test]
fn tls_records_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/tls_records");
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        weft_router::tls::fuzzing::records(&data);
        inputs += 1;
    }
    assert!(
        inputs >= 10,
        "corpus at {} has only {inputs} inputs",
        dir.display()
    );
}
