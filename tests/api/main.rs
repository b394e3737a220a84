//! One integration binary: every test talks to the real server over gRPC, and every
//! storage test runs on SQLite and on PostgreSQL.
mod support;

mod auth;
mod credentials;
mod crypto;
mod drills;
mod fake_provider;
mod fixtures;
mod idempotency;
mod isolation;
mod oauth;
mod receiver;
mod secrets;
mod validation;
mod webhooks;
