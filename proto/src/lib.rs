//! The gRPC contract between the core, the edges and other backends (package
//! `socketgram.v1`), generated from `socketgram/v1/chat.proto`.

pub mod client;

/// Types and services of `socketgram.v1`.
pub mod v1 {
    tonic::include_proto!("socketgram.v1");
}

/// The encoded descriptor set of every `.proto` here, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/socketgram_descriptor.bin"));
