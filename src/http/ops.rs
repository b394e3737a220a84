//! What operators and orchestrators ask over HTTP: `/healthz` (the process answers),
//! `/readyz` (it should get traffic: the database answers and it is not draining;
//! migrations and the keyring check passed before it started listening) and
//! `/metrics` (Prometheus).
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::{CONTENT_TYPE, Sampled};
use crate::service::Vault;

/// Longest a scrape waits for the database's answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Ops {
    vault: Vault,
    ready: Arc<AtomicBool>,
}

impl Ops {
    /// `ready` is what health checking reports for the whole server.
    pub fn new(vault: Vault, ready: Arc<AtomicBool>) -> Self {
        Self { vault, ready }
    }
}

/// `/healthz`: served on every HTTP listener.
pub fn health() -> Router {
    Router::new().route("/healthz", get(|| async { "ok" }))
}

/// `/readyz` and `/metrics`.
pub fn router(ops: Ops) -> Router {
    Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

async fn readyz(State(ops): State<Ops>) -> (StatusCode, &'static str) {
    if ops.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the database is unreachable or the server is draining",
        )
    }
}

#[tracing::instrument(name = "http.metrics", skip_all)]
async fn metrics(State(ops): State<Ops>) -> Response {
    let sampled = sample(&ops.vault).await;
    let text = ops.vault.metrics().encode(&sampled);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// The values a scrape reads from the database and the keyring.
async fn sample(vault: &Vault) -> Sampled {
    let store = vault.store();
    let pool = store.pool_stats();
    let started = Instant::now();
    let db_ping = matches!(
        tokio::time::timeout(PING_TIMEOUT, store.ping()).await,
        Ok(Ok(()))
    )
    .then(|| started.elapsed());
    let oldest = match store.oldest_pending_delivery().await {
        Ok(Some(created)) => Duration::from_millis(
            u64::try_from(vault.now().saturating_sub(created)).unwrap_or_default(),
        ),
        _ => Duration::ZERO,
    };
    Sampled {
        db_in_use: pool.in_use,
        db_idle: pool.idle,
        db_ping,
        db_reads_shared: pool.reads_shared,
        oldest_pending_delivery: oldest,
        seals: vault.keyring().seal_counts(),
    }
}
