//! Generates the Loki push messages from `proto/push.proto` with `prost-build`, using
//! the protoc shipped in the `protoc-bin-vendored` crate so no system install is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/push.proto");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    config.compile_protos(
        &["proto/push.proto"],
        &[std::path::PathBuf::from("proto"), include],
    )?;
    Ok(())
}
