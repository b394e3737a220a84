//! Compiles `proto/` with protox (pure Rust, so no system `protoc` is needed) and
//! generates the tonic server and client code. The encoded descriptor set is kept
//! for gRPC server reflection.
use std::{env, fs, path::PathBuf};

use prost::Message;

/// Generated types whose fields hold secrets; their `Debug` is written by hand in
/// `src/proto.rs` to print `[redacted]`.
const SECRET_BEARING: &[&str] = &[
    ".credvault.v1.ApiKeySecret",
    ".credvault.v1.OAuth2Secret",
    ".credvault.v1.BasicSecret",
    ".credvault.v1.CreateServiceTokenResponse",
    ".credvault.v1.CreateProviderRequest",
    ".credvault.v1.UpdateProviderRequest",
    ".credvault.v1.CreateWebhookEndpointResponse",
    ".credvault.v1.RotateWebhookSecretResponse",
    ".credvault.v1.StartOAuthResponse",
    ".credvault.v1.CreateConnectLinkResponse",
    ".credvault.v1.RotateConnectSecretResponse",
    ".credvault.v1.LoginRequestTemplate",
    ".credvault.v1.ForgotPasswordTemplate",
    ".credvault.v1.AuthenticateRequest",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["credvault/v1/credvault.proto"], ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("credvault_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .skip_debug(SECRET_BEARING.iter().copied())
        .compile_fds(fds)?;
    Ok(())
}
