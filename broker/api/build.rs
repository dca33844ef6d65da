//! Generates the admin API from ../proto/admin.proto with protox (a pure-Rust
//! protobuf compiler), so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "../proto";
    println!("cargo:rerun-if-changed={proto_dir}/admin.proto");
    println!("cargo:rerun-if-changed={proto_dir}/raft.proto");
    let descriptors = protox::compile(["admin.proto", "raft.proto"], [proto_dir])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
