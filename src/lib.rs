//! credvault: an encrypted credential vault served over gRPC.
//!
//! Data flows top to bottom: [`grpc`] handlers → [`service`] (domain rules, sealing via
//! [`crypto`]) → [`store`] (ciphertext and metadata only). `docs/` has the design.
pub mod app;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod embedded;
pub mod error;
pub mod grpc;
pub mod ids;
pub mod limit;
pub mod metrics;
pub mod model;
pub mod outbound;
pub mod proto;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod tls;
pub mod trace_context;

pub use app::App;
pub use config::Config;
pub mod http;
pub mod oauth;
#[cfg(test)]
mod properties;
pub mod webhooks;
pub mod workers;
