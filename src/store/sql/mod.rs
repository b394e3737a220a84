//! The store's implementation, written once and compiled once per engine.
//!
//! [`crate::store::sqlite`] and [`crate::store::postgres`] each include this
//! directory as their `sql` module (`#[path]`), beside an `engine` module that names
//! the sqlx driver (`Db`) and the [`Backend`](crate::store::Backend). Every query is
//! therefore typed for its driver: rows are decoded where the driver left them, with
//! no runtime dispatch and no copy into sqlx's `Any` rows. Each statement's SQL is
//! still written once: the text both engines accept lives here, and what they spell
//! differently is the one table in [`statements::DIALECT`].
use super::engine;

mod audit;
mod audit_writes;
mod batch;
mod connect;
mod creates;
mod external_auth;
mod gathered;
mod keys;
mod notifications;
pub(super) mod readers;
mod rows;
mod statements;
mod store;
mod tenant_keys;
mod users;

pub use store::SqlStore;
