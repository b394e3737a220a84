//! Changes every replica must hear about at once: a revoked token, a deleted tenant.
//! Replicas keep what they authenticate (and unsealed tenant keys) in memory for a
//! short while; an announced change drops what it makes stale, on every replica.
//!
//! On PostgreSQL a change is a `NOTIFY` on [`CHANNEL`], heard by one `LISTEN`ing
//! connection per store. Every other store that hears it acts on it, then says so
//! with a `NOTIFY` of its own (`ack <echo> <store>`), and the announcing store waits
//! (a bounded while) for as many of those as there are listening connections on its
//! database: once the announcement returns, no replica still holds what it made
//! stale. On SQLite, whose replicas share a file and so a machine, a change reaches
//! every store of this process on the same database before the announcement returns.
//! A listener that loses its connection reports [`Change::Everything`] at once and
//! again when it listens anew: it may have missed changes in between. Whatever is not
//! heard, the caches' time limits still bound.
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::oneshot;

use super::StoreResult;

/// The PostgreSQL notification channel.
pub const CHANNEL: &str = "credvault_changes";

/// How long an announcement waits for every listening store to acknowledge it.
const ECHO_WAIT: Duration = Duration::from_secs(1);

/// How long a new PostgreSQL store waits for its listening connection.
const LISTEN_WAIT: Duration = Duration::from_secs(5);

/// The `application_name` of every store's listening connection: an announcement
/// counts them to know how many acknowledgements to wait for.
const LISTENER_NAME: &str = "credvault-changes";

/// Something that makes cached state stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A token was revoked.
    Token(String),
    /// A tenant was deleted: its tokens and its key are gone.
    Tenant(String),
    /// Changes may have been missed: drop everything.
    Everything,
}

impl Change {
    fn payload(&self) -> String {
        match self {
            Change::Token(id) => format!("token {id}"),
            Change::Tenant(id) => format!("tenant {id}"),
            Change::Everything => "everything".into(),
        }
    }

    /// A payload another replica sent; anything unreadable counts as everything.
    fn parse(payload: &str) -> Change {
        match payload.split_once(' ') {
            Some(("token", id)) => Change::Token(id.to_owned()),
            Some(("tenant", id)) => Change::Tenant(id.to_owned()),
            _ => Change::Everything,
        }
    }
}

/// Called with each change heard; returns false once it no longer wants to hear.
pub type Hearer = Box<dyn Fn(&Change) -> bool + Send + Sync>;

/// Announcing changes and hearing them, on every replica of one database.
#[async_trait]
pub trait ChangeStore {
    /// Tells this process's hearers about `change`, then every other replica. On
    /// PostgreSQL it returns once every listening store has acted on it and said so,
    /// or after a second without.
    async fn announce(&self, change: &Change) -> StoreResult<()>;
    /// Calls `hearer` with every change announced from now on, here or elsewhere.
    fn hear(&self, hearer: Hearer);
    /// Ignores changes from elsewhere while `deaf` (tests: a lost notification).
    #[doc(hidden)]
    fn deafen(&self, deaf: bool);
}

/// One store's hearers, and the announcements it is waiting to hear back.
pub(super) struct Hearers {
    /// Names this store in its acknowledgements.
    id: u64,
    hearers: Mutex<Vec<Hearer>>,
    deaf: AtomicBool,
    echoes: Mutex<HashMap<u64, Echo>>,
}

impl Default for Hearers {
    fn default() -> Self {
        Self {
            id: rand::random(),
            hearers: Mutex::default(),
            deaf: AtomicBool::default(),
            echoes: Mutex::default(),
        }
    }
}

/// An announcement waiting for the stores that heard it.
struct Echo {
    /// Listening stores on the database when it was sent, this one included.
    stores: usize,
    heard_by: HashSet<u64>,
    done: Option<oneshot::Sender<()>>,
}

impl Hearers {
    pub(super) fn hear_with(&self, hearer: Hearer) {
        lock(&self.hearers).push(hearer);
    }

    /// Tells every hearer, dropping those that are done.
    pub(super) fn tell(&self, change: &Change) {
        lock(&self.hearers).retain(|hear| hear(change));
    }

    /// A change from elsewhere (or this store's own, come back).
    fn heard(&self, change: &Change) {
        if !self.deaf.load(Ordering::Relaxed) {
            self.tell(change);
        }
    }

    /// A notification's payload: `<echo> <change>`, or `ack <echo> <store>`. Returns
    /// the echo of a change from elsewhere that this store acted on and has to
    /// acknowledge.
    fn heard_notification(&self, payload: &str) -> Option<u64> {
        if let Some(ack) = payload.strip_prefix("ack ") {
            let (echo, store) = ack.split_once(' ')?;
            self.acknowledged(echo.parse().ok()?, store.parse().ok()?);
            return None;
        }
        let (echo, change) = payload.split_once(' ').unwrap_or(("", payload));
        self.heard(&Change::parse(change));
        let echo = echo.parse().ok()?;
        if lock(&self.echoes).contains_key(&echo) {
            self.acknowledged(echo, self.id);
            None
        } else {
            (!self.deaf.load(Ordering::Relaxed)).then_some(echo)
        }
    }

    /// Store `store` acted on this store's announcement `echo`.
    fn acknowledged(&self, echo: u64, store: u64) {
        let mut echoes = lock(&self.echoes);
        let Some(waiting) = echoes.get_mut(&echo) else {
            return;
        };
        waiting.heard_by.insert(store);
        if waiting.heard_by.len() >= waiting.stores
            && let Some(done) = waiting.done.take()
        {
            let _ = done.send(());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Neither list holds an invariant a panic elsewhere could break.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How changes travel between the replicas of one store's database.
pub(super) enum Changes {
    /// SQLite: to the other stores of this process on the same file.
    InProcess { own: Arc<Hearers>, file: Neighbours },
    /// PostgreSQL: `NOTIFY` sent over `pool`, heard by a listener task this value
    /// owns.
    Notify {
        own: Arc<Hearers>,
        pool: sqlx::PgPool,
        listener: tokio::task::JoinHandle<()>,
    },
}

impl Drop for Changes {
    fn drop(&mut self) {
        if let Changes::Notify { listener, .. } = self {
            listener.abort();
        }
    }
}

/// The stores of this process on one SQLite database.
type Neighbours = Arc<Mutex<Vec<Weak<Hearers>>>>;

/// The stores of this process, by SQLite database.
static SQLITE_FILES: LazyLock<Mutex<HashMap<String, Neighbours>>> = LazyLock::new(Mutex::default);

impl Changes {
    /// Joins the stores of this process on the SQLite database at `url`.
    pub(super) fn in_process(url: &str) -> Self {
        let own = Arc::new(Hearers::default());
        let file = {
            let mut files = lock(&SQLITE_FILES);
            // Forget databases no store of this process has open any more.
            files.retain(|_, stores| lock(stores).iter().any(|s| s.strong_count() > 0));
            files.entry(url.to_owned()).or_default().clone()
        };
        let mut stores = lock(&file);
        stores.retain(|s| s.strong_count() > 0);
        stores.push(Arc::downgrade(&own));
        drop(stores);
        Changes::InProcess { own, file }
    }

    /// Listens on the PostgreSQL database of `options`, and announces over `pool`. Returns
    /// once it listens (or after [`LISTEN_WAIT`] without): a replica that served
    /// before it listened would miss what other replicas announce meanwhile.
    pub(super) async fn notify(options: PgConnectOptions, pool: sqlx::PgPool) -> Self {
        let own = Arc::new(Hearers::default());
        let (listening, started) = oneshot::channel();
        let hearers = Arc::downgrade(&own);
        let options = options.application_name(LISTENER_NAME);
        let listener = tokio::spawn(listen(options, hearers, pool.clone(), listening));
        if tokio::time::timeout(LISTEN_WAIT, started).await.is_err() {
            tracing::warn!(
                "not listening for changes after {LISTEN_WAIT:?}; until it does, what this \
                 replica caches is bounded only by token_cache_ttl_ms"
            );
        }
        Changes::Notify {
            own,
            pool,
            listener,
        }
    }

    pub(super) fn own(&self) -> &Arc<Hearers> {
        match self {
            Changes::InProcess { own, .. } | Changes::Notify { own, .. } => own,
        }
    }

    /// Tells this store's hearers, then the other replicas (on PostgreSQL waiting a
    /// bounded while for every listening store to acknowledge it).
    pub(super) async fn announce(&self, change: &Change) -> StoreResult<()> {
        self.own().tell(change);
        match self {
            Changes::InProcess { own, file } => {
                let stores: Vec<_> = lock(file).iter().filter_map(Weak::upgrade).collect();
                for store in stores.iter().filter(|s| !Arc::ptr_eq(s, own)) {
                    store.heard(change);
                }
            }
            Changes::Notify { own, pool, .. } => notify_and_wait(own, pool, change).await?,
        }
        Ok(())
    }

    pub(super) fn deafen(&self, deaf: bool) {
        self.own().deaf.store(deaf, Ordering::Relaxed);
    }
}

/// Sends `change` over `pool`, then waits (at most [`ECHO_WAIT`]) until as many
/// stores as are listening on the database have acknowledged it, `own` included.
async fn notify_and_wait(own: &Hearers, pool: &sqlx::PgPool, change: &Change) -> StoreResult<()> {
    let stores = listening_stores(pool).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot count the listening replicas");
        1
    });
    let echo: u64 = rand::random();
    let (tx, rx) = oneshot::channel();
    let waiting = Echo {
        stores,
        heard_by: HashSet::new(),
        done: Some(tx),
    };
    lock(&own.echoes).insert(echo, waiting);
    let sent = notify(pool, format!("{echo} {}", change.payload())).await;
    if sent.is_ok() && tokio::time::timeout(ECHO_WAIT, rx).await.is_err() {
        let heard = lock(&own.echoes).get(&echo).map_or(0, |w| w.heard_by.len());
        tracing::warn!(
            stores,
            heard,
            "a change was not acknowledged by every listening store within {ECHO_WAIT:?}: \
             the others may use what they cached until it expires (token_cache_ttl_ms)"
        );
    }
    lock(&own.echoes).remove(&echo);
    Ok(sent?)
}

/// One notification on [`CHANNEL`].
async fn notify(pool: &sqlx::PgPool, payload: String) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(pool)
        .await
        .map(drop)
}

/// The stores listening on this database now (this one included, at least one).
async fn listening_stores(pool: &sqlx::PgPool) -> Result<usize, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(LISTENER_NAME)
    .fetch_one(pool)
    .await?;
    Ok(usize::try_from(n).unwrap_or(0).max(1))
}

/// Hears notifications for as long as the store lives, reconnecting after a lost
/// connection (with back-off), and telling everything on each loss and each return.
/// Acknowledges, over `pool`, each change from elsewhere once its hearers have it.
/// Tells `listening` once it first listens.
async fn listen(
    options: PgConnectOptions,
    hearers: Weak<Hearers>,
    pool: sqlx::PgPool,
    listening: oneshot::Sender<()>,
) {
    let mut listening = Some(listening);
    let mut delay = Duration::from_millis(100);
    loop {
        match subscribe(&options).await {
            Ok(mut listener) => {
                delay = Duration::from_millis(100);
                let Some(own) = hearers.upgrade() else { return };
                own.heard(&Change::Everything);
                drop(own);
                if let Some(listening) = listening.take() {
                    let _ = listening.send(());
                }
                loop {
                    let next = listener.try_recv().await;
                    let Some(own) = hearers.upgrade() else { return };
                    match next {
                        Ok(Some(n)) => {
                            if let Some(echo) = own.heard_notification(n.payload()) {
                                acknowledge(&pool, echo, own.id);
                            }
                        }
                        Ok(None) => {
                            tracing::warn!("the change listener lost its connection; reconnecting");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the change listener failed; reconnecting");
                            break;
                        }
                    }
                }
                match hearers.upgrade() {
                    Some(own) => own.heard(&Change::Everything),
                    None => return,
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for changes; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Tells the other stores, in the background, that store `id` acted on `echo`.
fn acknowledge(pool: &sqlx::PgPool, echo: u64, id: u64) {
    let pool = pool.clone();
    tokio::spawn(async move {
        if let Err(e) = notify(&pool, format!("ack {echo} {id}")).await {
            tracing::warn!(error = %e, "a change was not acknowledged");
        }
    });
}

/// A listening connection on `options`, which name it [`LISTENER_NAME`] so that
/// announcements count it.
async fn subscribe(options: &PgConnectOptions) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_with(options.clone())
        .await?;
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_read_back_and_nonsense_means_everything() {
        for change in [
            Change::Token("tok_1".into()),
            Change::Tenant("ten_1".into()),
            Change::Everything,
        ] {
            assert_eq!(Change::parse(&change.payload()), change);
        }
        assert_eq!(Change::parse("gibberish"), Change::Everything);
        assert_eq!(Change::parse("token"), Change::Everything);
    }

    /// Hearers with one hearer that keeps what it hears.
    fn recording() -> (Hearers, Arc<Mutex<Vec<Change>>>) {
        let hearers = Hearers::default();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        hearers.hear_with(Box::new(move |c| {
            lock(&log).push(c.clone());
            true
        }));
        (hearers, heard)
    }

    #[test]
    fn hearers_that_are_done_are_dropped_and_deaf_ones_hear_only_their_own() {
        let (hearers, heard) = recording();
        hearers.hear_with(Box::new(|_| false));
        hearers.tell(&Change::Everything);
        assert_eq!(lock(&hearers.hearers).len(), 1);
        hearers.deaf.store(true, Ordering::Relaxed);
        assert_eq!(
            hearers.heard_notification("1 token tok_a"),
            None,
            "not acted on"
        );
        hearers.tell(&Change::Tenant("ten_a".into()));
        assert_eq!(
            *lock(&heard),
            vec![Change::Everything, Change::Tenant("ten_a".into())]
        );
    }

    /// A change from elsewhere is acted on, then acknowledged; acknowledgements are
    /// counted by store, never taken for a change; an announcement is done once as
    /// many stores as were listening have acknowledged it.
    #[test]
    fn changes_are_acknowledged_and_acknowledgements_counted_by_store() {
        let (hearers, heard) = recording();
        assert_eq!(hearers.heard_notification("7 token tok_a"), Some(7));
        let (done, mut finished) = oneshot::channel();
        let waiting = Echo {
            stores: 3,
            heard_by: HashSet::new(),
            done: Some(done),
        };
        lock(&hearers.echoes).insert(9, waiting);
        assert_eq!(
            hearers.heard_notification("9 tenant ten_a"),
            None,
            "its own"
        );
        assert_eq!(hearers.heard_notification("ack 9 41"), None);
        assert_eq!(hearers.heard_notification("ack 9 41"), None);
        assert!(finished.try_recv().is_err(), "two of three stores");
        assert_eq!(hearers.heard_notification("ack 8 42"), None);
        assert!(finished.try_recv().is_err(), "another announcement's");
        assert_eq!(hearers.heard_notification("ack 9 42"), None);
        assert!(finished.try_recv().is_ok(), "three of three");
        assert_eq!(
            *lock(&heard),
            vec![
                Change::Token("tok_a".into()),
                Change::Tenant("ten_a".into())
            ]
        );
    }

    #[tokio::test]
    async fn stores_on_one_sqlite_file_hear_each_other_and_no_other_file() {
        let url = format!("sqlite://changes-{}.db", rand::random::<u64>());
        let (a, b) = (Changes::in_process(&url), Changes::in_process(&url));
        let other = Changes::in_process(&format!("{url}-other"));
        let count = |c: &Changes| {
            let n = Arc::new(Mutex::new(0));
            let m = n.clone();
            c.own().hear_with(Box::new(move |_| {
                *lock(&m) += 1;
                true
            }));
            n
        };
        let (na, nb, no) = (count(&a), count(&b), count(&other));
        a.announce(&Change::Token("tok_x".into())).await.unwrap();
        assert_eq!((*lock(&na), *lock(&nb), *lock(&no)), (1, 1, 0));
        drop(b);
        a.announce(&Change::Everything).await.unwrap();
        assert_eq!((*lock(&na), *lock(&nb)), (2, 1));
    }
}
