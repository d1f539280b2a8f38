//! The checked-in protobuf bindings equal what prost generates from the .proto today.
//! `WEFT_REGENERATE_PROTO=1` rewrites them instead of failing.

use std::path::PathBuf;

#[test]
fn generated_control_bindings_match_the_proto() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile(["weft/control/v1/control.proto"], [root.join("proto")])
        .expect("control.proto compiles");
    let out = std::env::temp_dir().join(format!("weft-proto-drift-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    prost_build::Config::new()
        .out_dir(&out)
        .compile_fds(fds)
        .expect("prost generates");
    let fresh = std::fs::read_to_string(out.join("weft.control.v1.rs")).unwrap();
    std::fs::remove_dir_all(&out).ok();

    let checked_in_path = root.join("src/control/weft.control.v1.rs");
    if std::env::var_os("WEFT_REGENERATE_PROTO").is_some() {
        std::fs::write(&checked_in_path, &fresh).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap();
    assert!(
        fresh == checked_in,
        "wire/src/control/weft.control.v1.rs is stale; regenerate with \
         WEFT_REGENERATE_PROTO=1 cargo test -p weft-wire --test proto_drift"
    );
}
