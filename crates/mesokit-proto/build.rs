//! Compiles `proto/` with protox (pure Rust, no system protoc), generates the prost types and,
//! from the same descriptors, the Mesos JSON codec (see `build/json_codegen.rs`).

#[path = "build/borrowed_codegen.rs"]
mod borrowed_codegen;
#[path = "build/boxing.rs"]
mod boxing;
#[path = "build/json_codegen.rs"]
mod json_codegen;

use std::path::PathBuf;

const FILES: &[&str] = &[
    "mesos/v1/mesos.proto",
    "mesos/v1/scheduler.proto",
    "mesos/v1/executor.proto",
    "mesos/v1/master.proto",
    "mesos/v1/agent.proto",
];

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-changed=build");
    let fds = match protox::compile(FILES, [&root]) {
        Ok(fds) => fds,
        Err(e) => panic!(
            "cannot compile the .proto files under {}: {e:?}",
            root.display()
        ),
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let mut config = prost_build::Config::new();
    config.btree_map(["."]);
    config.bytes(["."]);
    let boxed = boxing::fields_to_box(&fds);
    for field in &boxed {
        config.boxed(field);
    }
    config
        .compile_fds(fds.clone())
        .expect("prost-build failed on the compiled descriptors");
    let code = json_codegen::generate(&fds);
    std::fs::write(out.join("mesos_json.rs"), code).unwrap();
    let borrowed = borrowed_codegen::generate(&fds, &boxed);
    std::fs::write(out.join("mesos_borrowed.rs"), borrowed).unwrap();
}
