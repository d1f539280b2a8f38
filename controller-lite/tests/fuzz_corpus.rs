//! Replays the committed corpus of the controller's fuzz targets (`filter`,
//! `unauth_bodies` in fuzz/) through the same entry points, so every input the fuzzer
//! found interesting stays a regression test in ordinary test runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        run(&data);
        inputs += 1;
    }
    assert!(
        inputs >= 10,
        "corpus at {} has only {inputs} inputs",
        dir.display()
    );
}

#[test]
fn filter_corpus() {
    replay("filter", weft_controller::fuzzing::filter);
}

#[test]
fn unauth_bodies_corpus() {
    replay("unauth_bodies", weft_controller::fuzzing::unauth_bodies);
}
