pub mod admin;
pub mod client;
pub mod connect;
pub mod cred;
pub mod operator;
pub mod provider;
pub mod serve;
pub mod webhook;
