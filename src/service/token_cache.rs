//! Tokens this replica authenticated lately, so a request need not read its token
//! from the database. An entry is used for at most `token_cache_ttl_ms`; a revocation
//! or a tenant's deletion announced by any replica drops it at once (see
//! `store::changes`), and the time limit bounds what a lost announcement leaves.
//! Expiry is checked on every use, cached or not.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::clock::{Clock, Millis};
use crate::model::ServiceToken;
use crate::store::Change;

/// At most this many tokens are kept; a full cache first drops what is out of time,
/// then everything.
const MAX_ENTRIES: usize = 10_000;

struct Entry {
    token: Arc<ServiceToken>,
    until: Millis,
}

#[derive(Default)]
struct Entries {
    by_hash: HashMap<Vec<u8>, Entry>,
    /// Counts the changes heard: a lookup that started before one may have read what
    /// it made stale, and is not kept.
    generation: u64,
}

/// What [`TokenCache::get`] found.
pub enum Lookup {
    Hit(Arc<ServiceToken>),
    /// Not cached; keep what the database says with [`TokenCache::put`] and this
    /// generation.
    Miss(u64),
}

pub struct TokenCache {
    ttl_ms: Millis,
    clock: Arc<dyn Clock>,
    entries: Mutex<Entries>,
}

impl TokenCache {
    /// A cache keeping each token for `ttl_ms` (0: none is kept).
    pub fn new(ttl_ms: Millis, clock: Arc<dyn Clock>) -> Self {
        Self {
            ttl_ms,
            clock,
            entries: Mutex::default(),
        }
    }

    /// The token stored under `hash`, if one was kept and its time is not over.
    pub fn get(&self, hash: &[u8]) -> Lookup {
        let now = self.clock.now_ms();
        let entries = self.lock();
        match entries.by_hash.get(hash).filter(|e| e.until > now) {
            Some(e) => Lookup::Hit(e.token.clone()),
            None => Lookup::Miss(entries.generation),
        }
    }

    /// Keeps `token`, read at `generation`, unless a change was heard since.
    pub fn put(&self, hash: Vec<u8>, token: Arc<ServiceToken>, generation: u64) {
        if self.ttl_ms <= 0 {
            return;
        }
        let now = self.clock.now_ms();
        let mut entries = self.lock();
        if entries.generation != generation {
            return;
        }
        if entries.by_hash.len() >= MAX_ENTRIES {
            entries.by_hash.retain(|_, e| e.until > now);
            if entries.by_hash.len() >= MAX_ENTRIES {
                entries.by_hash.clear();
            }
        }
        let until = now.saturating_add(self.ttl_ms);
        entries.by_hash.insert(hash, Entry { token, until });
    }

    /// Drops what `change` makes stale.
    pub fn forget(&self, change: &Change) {
        let mut entries = self.lock();
        entries.generation += 1;
        match change {
            Change::Token(id) => entries.by_hash.retain(|_, e| e.token.id != *id),
            Change::Tenant(id) => entries.by_hash.retain(|_, e| e.token.tenant_id != *id),
            Change::Everything => entries.by_hash.clear(),
        }
    }

    /// How many tokens are kept now (for tests).
    #[doc(hidden)]
    pub fn held(&self) -> usize {
        self.lock().by_hash.len()
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // The map holds no invariant a panic elsewhere could break.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn token(id: &str, tenant: &str) -> Arc<ServiceToken> {
        Arc::new(ServiceToken {
            id: id.into(),
            tenant_id: tenant.into(),
            scopes: vec![],
            description: String::new(),
            created_at: 0,
            revoked_at: None,
            expires_at: None,
            constraints: Default::default(),
        })
    }

    fn cached(cache: &TokenCache, hash: &[u8]) -> Option<String> {
        match cache.get(hash) {
            Lookup::Hit(t) => Some(t.id.clone()),
            Lookup::Miss(_) => None,
        }
    }

    fn put(cache: &TokenCache, hash: &[u8], t: Arc<ServiceToken>) {
        let Lookup::Miss(generation) = cache.get(hash) else {
            panic!("already cached")
        };
        cache.put(hash.to_vec(), t, generation);
    }

    #[test]
    fn an_entry_lasts_its_time_and_no_longer() {
        let clock = ManualClock::new(1_000);
        let cache = TokenCache::new(1_000, Arc::new(clock.clone()));
        put(&cache, b"a", token("tok_a", "ten_1"));
        clock.advance_ms(999);
        assert_eq!(cached(&cache, b"a").as_deref(), Some("tok_a"));
        clock.advance_ms(1);
        assert_eq!(cached(&cache, b"a"), None);
    }

    #[test]
    fn changes_drop_their_tokens_and_only_theirs() {
        let cache = TokenCache::new(1_000, Arc::new(ManualClock::new(0)));
        put(&cache, b"a", token("tok_a", "ten_1"));
        put(&cache, b"b", token("tok_b", "ten_1"));
        put(&cache, b"c", token("tok_c", "ten_2"));
        cache.forget(&Change::Token("tok_a".into()));
        assert_eq!(cached(&cache, b"a"), None);
        assert_eq!(cache.held(), 2);
        cache.forget(&Change::Tenant("ten_1".into()));
        assert_eq!(cached(&cache, b"c").as_deref(), Some("tok_c"));
        assert_eq!(cache.held(), 1);
        cache.forget(&Change::Everything);
        assert_eq!(cache.held(), 0);
    }

    #[test]
    fn a_lookup_that_straddles_a_change_is_not_kept() {
        let cache = TokenCache::new(1_000, Arc::new(ManualClock::new(0)));
        let Lookup::Miss(generation) = cache.get(b"a") else {
            panic!()
        };
        // The token is revoked while its row is being read.
        cache.forget(&Change::Token("tok_a".into()));
        cache.put(b"a".to_vec(), token("tok_a", "ten_1"), generation);
        assert_eq!(cached(&cache, b"a"), None);
    }

    #[test]
    fn a_zero_time_keeps_nothing_and_a_full_cache_starts_over() {
        let off = TokenCache::new(0, Arc::new(ManualClock::new(0)));
        put(&off, b"a", token("tok_a", "ten_1"));
        assert_eq!(off.held(), 0);
        let cache = TokenCache::new(1_000, Arc::new(ManualClock::new(0)));
        for i in 0..=MAX_ENTRIES {
            put(&cache, &i.to_be_bytes(), token("tok", "ten"));
        }
        assert_eq!(cache.held(), 1);
    }
}
