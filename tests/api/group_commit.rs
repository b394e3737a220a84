//! Creates that reach the store's group-commit writer together, at the store's own
//! interface. On a current-thread runtime every create polled by one `join_all` is
//! queued before the writer runs, so each `join_all` below is one batch: on
//! PostgreSQL one statement for all its creates, on SQLite one transaction with a
//! savepoint per create. Either way each create must come out as if it had been
//! written alone: its own row, end user, idempotency key and audit record, or none
//! of them.
//!
//! Reveals' reads that arrive together are gathered the same way (on PostgreSQL into
//! one statement per tenant while earlier ones run; SQLite reads them on the calling
//! thread): each must get exactly the row it would have read alone.
use std::collections::BTreeSet;
use std::sync::Arc;

use credvault::model::users::EndUser;
use credvault::model::{
    AuditEntry, CredentialMeta, Kind, RefreshState, SealedCredential, Status, Tenant,
};
use credvault::store::{AuditFilter, IdempotencyRecord, Store, StoreError};
use futures::future::{join_all, maybe_done};

use crate::support::{Backend, TestDb};

const TENANT: &str = "ten_batch";

/// Create `n`: for `user`, naming `email`, with idempotency key `key`.
struct Create {
    credential: SealedCredential,
    key: Option<IdempotencyRecord>,
    audit: AuditEntry,
}

fn create(n: u32, user: &str, email: Option<&str>, key: Option<&str>) -> Create {
    let id = format!("cred_batch{n:02}");
    let meta = CredentialMeta {
        tenant_id: TENANT.into(),
        id: id.clone(),
        user_id: user.into(),
        user_email: email.map(str::to_owned),
        name: format!("name {n} \"quoted\" é"),
        provider: "stripe".into(),
        kind: Kind::ApiKey,
        status: Status::Active,
        labels: [("team".to_owned(), format!("t{n}"))].into(),
        scopes: vec![format!("scope{n}")],
        expires_at: Some(9_000_000 + i64::from(n)),
        token_expires_at: None,
        version: 1,
        created_at: 1_000 + i64::from(n),
        updated_at: 1_000 + i64::from(n),
        refresh: RefreshState::default(),
        expiry_warned_ms: None,
    };
    Create {
        credential: SealedCredential {
            meta,
            blob: vec![0, 255, n as u8, b'"', b'\\'],
        },
        key: key.map(|k| IdempotencyRecord {
            tenant_id: TENANT.into(),
            request_id: k.into(),
            fingerprint: vec![7, n as u8],
            key_version: 1,
            credential_id: id.clone(),
            created_at: 1_000 + i64::from(n),
        }),
        audit: AuditEntry {
            tenant_id: TENANT.into(),
            at: 1_000 + i64::from(n),
            actor: "tok_batch".into(),
            action: "create",
            credential_id: id,
            user_id: user.into(),
            request_id: key.unwrap_or_default().into(),
            source: "127.0.0.1:9".into(),
            outcome: "ok",
            detail: String::new(),
        },
    }
}

/// The creates of `batch`, queued together; each one's outcome, in order.
async fn together(store: &Arc<dyn Store>, batch: &[Create]) -> Vec<Result<Option<String>, String>> {
    let writes = batch
        .iter()
        .map(|c| store.insert_credential(&c.credential, c.key.as_ref(), &c.audit));
    join_all(writes)
        .await
        .into_iter()
        .map(|r| {
            r.map_err(|e| match e {
                StoreError::Conflict => "conflict".to_owned(),
                other => other.to_string(),
            })
        })
        .collect()
}

async fn email_of(store: &Arc<dyn Store>, user: &str) -> Option<Option<String>> {
    let user = store.get_user(TENANT, user).await.unwrap();
    user.map(|u| u.email)
}

async fn creates_arriving_together(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = credvault::store::open(&db.url(), 2).await.unwrap();
    let tenant = Tenant {
        id: TENANT.into(),
        name: "batch".into(),
        created_at: 1,
    };
    store.insert_tenant(&tenant).await.unwrap();
    // Before the batches: a create that holds request id "taken", and a user who
    // holds taken@example.com.
    let earlier = create(0, "u3", None, Some("taken"));
    assert_eq!(
        together(&store, std::slice::from_ref(&earlier)).await,
        [Ok(None)]
    );
    let holder = EndUser {
        tenant_id: TENANT.into(),
        user_id: "holder".into(),
        email: Some("taken@example.com".into()),
        external_id: None,
        created_at: 1,
        updated_at: 1,
    };
    store.insert_user(&holder).await.unwrap();

    let first = [
        create(1, "u1", None, None),
        create(2, "u1", Some("first@example.com"), None),
        create(3, "u1", None, None),
        create(4, "u2", Some("second@example.com"), Some("dup")),
        create(5, "u2", None, Some("dup")),
        create(6, "u3", None, Some("taken")),
        create(7, "u4", None, Some("new")),
    ];
    let outcomes = together(&store, &first).await;
    let first_email = Some("first@example.com".to_owned());
    assert!(outcomes[0].is_ok(), "{outcomes:?}");
    assert_eq!(outcomes[1], Ok(first_email.clone()));
    assert_eq!(outcomes[2], Ok(first_email.clone()));
    assert_eq!(outcomes[3], Ok(Some("second@example.com".into())));
    assert_eq!(
        outcomes[4],
        Err("conflict".into()),
        "the batch's second use of a key"
    );
    assert_eq!(
        outcomes[5],
        Err("conflict".into()),
        "a key taken before the batch"
    );
    assert_eq!(outcomes[6], Ok(None));

    // A create naming an email another user holds fails alone.
    let second = [
        create(8, "u5", Some("taken@example.com"), None),
        create(9, "u6", Some("sixth@example.com"), None),
        create(10, "u1", None, None),
    ];
    let outcomes = together(&store, &second).await;
    assert_eq!(outcomes[0], Err("conflict".into()), "{outcomes:?}");
    assert_eq!(outcomes[1], Ok(Some("sixth@example.com".into())));
    assert_eq!(outcomes[2], Ok(first_email.clone()));

    let written: BTreeSet<u32> = [0, 1, 2, 3, 4, 7, 9, 10].into();
    for c in first.iter().chain(&second).chain([&earlier]) {
        let meta = &c.credential.meta;
        let stored = store.get_sealed(TENANT, &meta.id).await.unwrap();
        let n: u32 = meta.id["cred_batch".len()..].parse().unwrap();
        if written.contains(&n) {
            let stored = stored.unwrap_or_else(|| panic!("{} was not written", meta.id));
            assert_eq!(stored.blob, c.credential.blob);
            let expected_email = stored.meta.user_email.clone();
            assert_eq!(
                stored.meta,
                CredentialMeta {
                    user_email: expected_email,
                    ..meta.clone()
                }
            );
        } else {
            assert!(stored.is_none(), "{} was written", meta.id);
        }
    }
    assert_eq!(email_of(&store, "u1").await, Some(first_email));
    assert_eq!(
        email_of(&store, "u2").await,
        Some(Some("second@example.com".into()))
    );
    assert_eq!(email_of(&store, "u4").await, Some(None));
    assert_eq!(email_of(&store, "u5").await, None, "its create failed");

    for (key, holder) in [("dup", 4), ("new", 7), ("taken", 0)] {
        let record = store.find_idempotency(TENANT, key).await.unwrap().unwrap();
        assert_eq!(
            record.credential_id,
            format!("cred_batch{holder:02}"),
            "{key}"
        );
    }

    let filter = AuditFilter {
        tenant_id: TENANT.into(),
        action: Some("create".into()),
        ..AuditFilter::default()
    };
    let records = store.list_audit(&filter, None, 100).await.unwrap();
    let audited: Vec<&str> = records.iter().map(|r| r.credential_id.as_str()).collect();
    let expected: Vec<String> = written
        .iter()
        .map(|n| format!("cred_batch{n:02}"))
        .collect();
    let mut sorted = audited.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted, expected,
        "one record per written create, none for the rest"
    );

    // Reveals' records queued together: a batch of audit records alone.
    let reveals = (0..3).map(|n| AuditEntry {
        action: "reveal",
        ..create(n, "u1", None, None).audit
    });
    let reveals: Vec<AuditEntry> = reveals.collect();
    for done in join_all(reveals.iter().map(|a| store.insert_audit(a))).await {
        done.unwrap();
    }
    chain_as_written(&store, backend, written.len() + reveals.len()).await;

    // A write outside the group commit moves a head past where the last batch left
    // it: the next batch, which counted on that head, is tried again reading it.
    let gone = AuditEntry {
        action: "delete",
        ..create(1, "u1", None, None).audit
    };
    assert!(
        store
            .delete_credential(TENANT, "cred_batch01", &gone)
            .await
            .unwrap()
    );
    for done in join_all(reveals.iter().map(|a| store.insert_audit(a))).await {
        done.unwrap();
    }
    chain_as_written(&store, backend, written.len() + 2 * reveals.len() + 1).await;

    // The tenant goes, chain and head with it, while the writer still knows the
    // head. A record of the tenant that arrives late starts a chain afresh, at 1.
    let by_operator = AuditEntry {
        tenant_id: String::new(),
        action: "tenant.delete",
        ..gone.clone()
    };
    store
        .delete_tenant_rows(TENANT, &by_operator)
        .await
        .unwrap();
    store.insert_audit(&reveals[0]).await.unwrap();
    let late = store.chained_audit(TENANT, 0, 100).await.unwrap();
    let places: Vec<Option<i64>> = late.iter().map(|r| r.seq).collect();
    match backend {
        Backend::Sqlite => assert_eq!(places, [Some(1)]),
        Backend::Postgres => assert_eq!(places, []),
    }
    drop(db);
}

/// The tenant's chain after the batches, which wrote `n` records. On SQLite each
/// record took its place as it was written: places 1..=n, each hash over the one
/// before, and no place for a create that rolled back. On PostgreSQL none has a
/// place yet: linking them is the chain job's.
async fn chain_as_written(store: &Arc<dyn Store>, backend: Backend, n: usize) {
    let chained = store.chained_audit(TENANT, 0, 100).await.unwrap();
    let waiting = store.unchained_count(TENANT).await.unwrap();
    if backend == Backend::Postgres {
        assert_eq!((chained.len(), waiting), (0, n as u64));
        return;
    }
    assert_eq!((chained.len(), waiting), (n, 0));
    let mut prev = credvault::model::audit::GENESIS.to_vec();
    for (r, seq) in chained.iter().zip(1..) {
        assert_eq!(r.seq, Some(seq), "{r:?}");
        assert_eq!(r.prev_hash.as_ref(), Some(&prev), "{r:?}");
        assert!(r.hash_holds(), "{r:?}");
        prev = r.hash.clone().unwrap();
    }
}

/// Reads of sealed credentials arriving together: of this tenant's, another
/// tenant's, missing ones and the same one twice. Each gets what it gets alone.
async fn reads_arriving_together(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let store = credvault::store::open(&db.url(), 2).await.unwrap();
    let other = "ten_other";
    for (id, name) in [(TENANT, "batch"), (other, "other")] {
        let created_at = 1;
        let tenant = Tenant {
            id: id.into(),
            name: name.into(),
            created_at,
        };
        store.insert_tenant(&tenant).await.unwrap();
    }
    let mut theirs = create(9, "u9", None, None);
    theirs.credential.meta.tenant_id = other.into();
    theirs.audit.tenant_id = other.into();
    let ours: Vec<Create> = (0..6).map(|n| create(n, "u1", None, None)).collect();
    for written in together(&store, &ours)
        .await
        .into_iter()
        .chain(together(&store, &[theirs]).await)
    {
        written.unwrap();
    }
    let wanted: Vec<(&str, String)> = (0..40)
        .map(|n: u32| {
            let tenant = if n % 7 == 3 { other } else { TENANT };
            (tenant, format!("cred_batch{:02}", n % 11))
        })
        .collect();
    let mut alone = Vec::new();
    for (tenant, id) in &wanted {
        alone.push(store.get_sealed(tenant, id).await.unwrap());
    }
    // Each read is started, in order, before any has its answer.
    let mut reads: Vec<_> = wanted
        .iter()
        .map(|(tenant, id)| Box::pin(maybe_done(store.get_sealed(tenant, id))))
        .collect();
    for read in &mut reads {
        let _ = futures::poll!(read.as_mut());
    }
    join_all(reads.iter_mut().map(|read| read.as_mut())).await;
    let gathered: Vec<_> = reads
        .iter_mut()
        .map(|read| read.as_mut().take_output().unwrap().unwrap())
        .collect();
    let key = |s: &Option<SealedCredential>| s.as_ref().map(|s| (s.meta.clone(), s.blob.clone()));
    let found = alone.iter().filter(|s| s.is_some()).count();
    // 21 of ours, and the other tenant's once (n = 31); the rest are missing or the
    // other tenant's ids asked of this one, or the reverse.
    assert_eq!(found, 22);
    assert_eq!(
        gathered.iter().map(key).collect::<Vec<_>>(),
        alone.iter().map(key).collect::<Vec<_>>()
    );
    if backend == Backend::Postgres {
        // The first two reads take the two turns; the rest wait, and share the
        // next statements (how many share depends on when each turn comes back: the
        // steps of a turn are `sql/gathered.rs`'s own tests). None would share one if
        // PostgreSQL's statement for many failed: each read would read alone.
        let shared = store.pool_stats().reads_shared;
        assert!(shared > 1, "{shared} reads shared a statement");
    }
}

#[tokio::test]
async fn sqlite() {
    creates_arriving_together(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres() {
    creates_arriving_together(Backend::Postgres).await;
}

#[tokio::test]
async fn reads_sqlite() {
    reads_arriving_together(Backend::Sqlite).await;
}

#[tokio::test]
async fn reads_postgres() {
    reads_arriving_together(Backend::Postgres).await;
}
