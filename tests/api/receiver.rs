//! A webhook receiver for the tests: records every request (and checks nothing
//! itself — the tests verify signatures), answering as scripted.
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::Notify;

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub enum Answer {
    Status(u16),
    RetryAfter(u16, &'static str),
    /// Answer 200 only after this long (past the vault's timeout).
    Hang(Duration),
    /// Answer 500 only once the test opens the gate.
    Hold(Gate),
    Redirect,
}

/// A gate held requests wait at. Opening it releases those waiting and every
/// one that comes later, so a test never races a request that has been
/// recorded but has not yet begun to wait.
#[derive(Clone, Debug)]
pub struct Gate(Arc<tokio::sync::watch::Sender<bool>>);

impl Gate {
    pub fn closed() -> Self {
        Self(Arc::new(tokio::sync::watch::channel(false).0))
    }

    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn passed(&self) {
        // The sender lives in `self`, so the wait ends only when the gate opens.
        let _ = self.0.subscribe().wait_for(|open| *open).await;
    }
}

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
    pub body: String,
    /// The W3C trace context the vault sent.
    pub traceparent: String,
}

struct Inner {
    script: VecDeque<Answer>,
    otherwise: Answer,
    received: Vec<Received>,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    pub arrived: Arc<Notify>,
}

impl Receiver {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            script: VecDeque::new(),
            otherwise: Answer::Status(200),
            received: Vec::new(),
        }));
        let arrived = Arc::new(Notify::new());
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state((inner.clone(), arrived.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            addr,
            inner,
            arrived,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answers the next requests so, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.inner.lock().unwrap().script.extend(answers);
    }

    /// Answers every unscripted request so.
    pub fn otherwise(&self, answer: Answer) {
        self.inner.lock().unwrap().otherwise = answer;
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }
}

async fn hook(
    State((inner, arrived)): State<(Arc<Mutex<Inner>>, Arc<Notify>)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let answer = {
        let mut i = inner.lock().unwrap();
        i.received.push(Received {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp").parse().unwrap_or(-1),
            signature: header("webhook-signature"),
            body: String::from_utf8_lossy(&body).into_owned(),
            traceparent: header("traceparent"),
        });
        let otherwise = i.otherwise.clone();
        i.script.pop_front().unwrap_or(otherwise)
    };
    arrived.notify_waiters();
    match answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Answer::RetryAfter(code, after) => (
            StatusCode::from_u16(code).unwrap(),
            [(header::RETRY_AFTER, after)],
        )
            .into_response(),
        Answer::Hang(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK.into_response()
        }
        Answer::Hold(gate) => {
            gate.passed().await;
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Answer::Redirect => (
            StatusCode::FOUND,
            [(header::LOCATION, "http://127.0.0.1:9/elsewhere")],
        )
            .into_response(),
    }
}
