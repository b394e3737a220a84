//! Audit records: who did what, to what, from where, with what outcome. Never a
//! secret. Each tenant's records form a hash chain (docs/audit.md): record `seq`
//! carries the hash of record `seq - 1`, and its own hash covers both.
use sha2::{Digest, Sha256};

use crate::clock::Millis;

/// The outcome of a call that did what it was asked.
pub const OUTCOME_OK: &str = "ok";

/// A record as written by the code that made the change. It takes its place in its
/// tenant's chain as it is written (SQLite) or from the chain job (PostgreSQL;
/// docs/audit.md, "The chain").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// The tenant whose chain it joins; `""` is the vault operator's own chain.
    pub tenant_id: String,
    pub at: Millis,
    /// The service token id of the caller, `operator` for the in-process CLI, or
    /// `system` for the vault's own background jobs.
    pub actor: String,
    pub action: &'static str,
    /// What the action was done to: a credential id, or another resource's id.
    pub credential_id: String,
    /// The end user the record concerns, where there is one.
    pub user_id: String,
    /// The request's id: the caller's idempotency key where the call takes one,
    /// else its `x-request-id` metadata.
    pub request_id: String,
    /// The caller's network address (`ip:port`); empty for background jobs.
    pub source: String,
    /// `ok`, or the gRPC status code name of a refusal.
    pub outcome: &'static str,
    /// JSON with what else the record needs (a login's user, device and outcome);
    /// empty for most records. Never a secret.
    pub detail: String,
}

impl AuditEntry {
    /// The same record, in tenant `tenant_id`'s chain (an operator acting on a
    /// tenant other than the one its token belongs to).
    pub fn in_tenant(mut self, tenant_id: &str) -> Self {
        self.tenant_id = tenant_id.to_owned();
        self
    }

    /// The same record, about end user `user_id`.
    pub fn for_user(mut self, user_id: &str) -> Self {
        self.user_id = user_id.to_owned();
        self
    }
}

/// A record as read back: what was written, and its place in the chain once it has
/// one (`seq`, `prev_hash` and `hash` are `None` until the chain job reaches it, on
/// PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditRecord {
    /// The row id: the order records were written in, not the chain's order.
    pub id: i64,
    pub tenant_id: String,
    pub at: Millis,
    pub actor: String,
    pub action: String,
    pub credential_id: String,
    pub user_id: String,
    pub request_id: String,
    pub source: String,
    pub outcome: String,
    pub detail: String,
    pub seq: Option<i64>,
    pub prev_hash: Option<Vec<u8>>,
    pub hash: Option<Vec<u8>>,
}

/// The hash the chain starts from: `prev_hash` of each tenant's record 1.
pub const GENESIS: [u8; 32] = [0; 32];

/// What every record hash starts with, so it cannot be mistaken for another hash.
const RECORD_DOMAIN: &[u8] = b"credvault/audit/v1/record";

/// `SHA-256(domain ‖ prev ‖ seq ‖ at ‖ fields)`, each text field as a 4-byte
/// big-endian length and its UTF-8 bytes (docs/audit.md, "Record hash"). `fields`:
/// tenant, actor, action, subject, user, request id, source, outcome, detail.
fn record_hash(prev: &[u8], seq: i64, at: Millis, fields: [&str; 9]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(RECORD_DOMAIN);
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(at.to_be_bytes());
    for field in fields {
        h.update(u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().into()
}

impl AuditEntry {
    /// The record's hash at place `seq` after a record whose hash is `prev`: the
    /// same as [`AuditRecord::chain_hash`] of the record once written.
    pub fn chain_hash(&self, seq: i64, prev: &[u8]) -> [u8; 32] {
        record_hash(prev, seq, self.at, self.hashed_fields())
    }

    /// The text fields a record hash covers, in [`record_hash`]'s order.
    fn hashed_fields(&self) -> [&str; 9] {
        [
            &self.tenant_id,
            &self.actor,
            self.action,
            &self.credential_id,
            &self.user_id,
            &self.request_id,
            &self.source,
            self.outcome,
            &self.detail,
        ]
    }
}

impl AuditRecord {
    /// The record's hash at place `seq` after a record whose hash is `prev`
    /// (docs/audit.md, "Record hash").
    pub fn chain_hash(&self, seq: i64, prev: &[u8]) -> [u8; 32] {
        // record_hash's order, as in AuditEntry::hashed_fields.
        let fields = [
            &self.tenant_id,
            &self.actor,
            &self.action,
            &self.credential_id,
            &self.user_id,
            &self.request_id,
            &self.source,
            &self.outcome,
            &self.detail,
        ];
        record_hash(prev, seq, self.at, fields.map(String::as_str))
    }

    /// Whether the stored hash is the hash of this record at its stored place.
    pub fn hash_holds(&self) -> bool {
        self.hash_holds_at(self.seq.unwrap_or_default())
    }

    /// Whether the stored hash is this record's hash had it sat at `seq`.
    pub fn hash_holds_at(&self, seq: i64) -> bool {
        match (&self.prev_hash, &self.hash) {
            (Some(prev), Some(hash)) => self.chain_hash(seq, prev).as_slice() == hash.as_slice(),
            _ => false,
        }
    }
}

/// A signed statement of a chain's head: record `seq` of `tenant_id` has `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub tenant_id: String,
    pub seq: i64,
    pub hash: Vec<u8>,
    pub at: Millis,
    pub key_version: u32,
    pub mac: Vec<u8>,
}

/// What every checkpoint MAC starts with.
const CHECKPOINT_DOMAIN: &[u8] = b"credvault/audit/v1/checkpoint";

impl Checkpoint {
    /// The bytes the MAC covers: `domain ‖ len(tenant) ‖ tenant ‖ seq ‖ hash ‖ at`.
    pub fn signed_bytes(tenant_id: &str, seq: i64, hash: &[u8], at: Millis) -> Vec<u8> {
        let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + tenant_id.len() + 52);
        m.extend_from_slice(CHECKPOINT_DOMAIN);
        m.extend_from_slice(
            &u32::try_from(tenant_id.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        m.extend_from_slice(tenant_id.as_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(hash);
        m.extend_from_slice(&at.to_be_bytes());
        m
    }

    pub fn message(&self) -> Vec<u8> {
        Self::signed_bytes(&self.tenant_id, self.seq, &self.hash, self.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_hashes_alike_before_and_after_it_is_written() {
        let entry = AuditEntry {
            tenant_id: "t1".into(),
            at: 1_700_000_000_000,
            actor: "tok_1".into(),
            action: "reveal",
            credential_id: "cred_1".into(),
            user_id: "u1".into(),
            request_id: "req-1".into(),
            source: "127.0.0.1:5000".into(),
            outcome: OUTCOME_OK,
            detail: r#"{"k":"v"}"#.into(),
        };
        let record = AuditRecord {
            id: 7,
            tenant_id: entry.tenant_id.clone(),
            at: entry.at,
            actor: entry.actor.clone(),
            action: entry.action.into(),
            credential_id: entry.credential_id.clone(),
            user_id: entry.user_id.clone(),
            request_id: entry.request_id.clone(),
            source: entry.source.clone(),
            outcome: entry.outcome.into(),
            detail: entry.detail.clone(),
            ..AuditRecord::default()
        };
        assert_eq!(
            entry.chain_hash(3, &GENESIS),
            record.chain_hash(3, &GENESIS)
        );
        // Every field counts, the subject and the user in their own places.
        let mut swapped = record.clone();
        std::mem::swap(&mut swapped.credential_id, &mut swapped.user_id);
        assert_ne!(
            record.chain_hash(3, &GENESIS),
            swapped.chain_hash(3, &GENESIS)
        );
        assert_ne!(
            record.chain_hash(3, &GENESIS),
            record.chain_hash(4, &GENESIS)
        );
    }
}
