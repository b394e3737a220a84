//! One integration binary: every test talks to the real server over gRPC, and every
//! storage test runs on SQLite and on PostgreSQL.
mod support;

mod auth;
mod auth_kit;
mod browser;
mod cli;
mod connect;
mod connect_kit;
mod credentials;
mod crypto;
mod deploy;
mod drills;
mod external_auth;
mod fake_provider;
mod fixtures;
mod idempotency;
mod isolation;
mod keys;
mod lifecycle;
mod oauth;
mod operations;
mod paging;
mod postgres_tls;
mod provider_security;
mod receiver;
mod refresh;
mod scopes;
mod secrets;
mod sign_in;
mod tls;
mod tokens;
mod traces;
mod users;
mod validation;
mod webhooks;
