//! Compiles `socketgram/v1/*.proto` with the pure-Rust `protox` compiler (no `protoc` needed on
//! the build machine) and keeps the encoded descriptor set for gRPC reflection; and the core
//! replicas' bus messages (`socketgram/bus/v1`), which are no gRPC service.

use std::{env, fs, path::PathBuf};

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["socketgram/v1/chat.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["."])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("socketgram_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    let bus = "socketgram/bus/v1/bus.proto";
    println!("cargo:rerun-if-changed={bus}");
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_fds(protox::compile([bus], ["."])?)?;
    Ok(())
}
