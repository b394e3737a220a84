//! The floor: the least a reveal could cost on this machine and database. A minimal
//! gRPC service (tonic's health `Check`, reused for its generated code) whose handler
//! does one typed point read of a sealed credential on the vault's own database, with
//! sqlx's typed pool, and nothing else: no token, no decryption, no audit record. The
//! distance between RevealCredential and this is what credvault itself adds.
//!
//! `--floor-on-caller` (SQLite): the same read made with rusqlite on the calling
//! tokio thread, where sqlx sends each query to the connection's own thread and
//! waits for the answer: what those hand-offs cost, measured.
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// The read each call makes: the credential whose id the request's `service` names.
const READ: &str = "SELECT secret FROM credentials WHERE tenant_id = $1 AND id = $2";

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
    /// SQLite connections of rusqlite's, each used by one caller at a time.
    OnCaller(Vec<std::sync::Mutex<rusqlite::Connection>>),
}

struct Floor {
    pool: Pool,
    tenant_id: String,
}

#[tonic::async_trait]
impl Health for Floor {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let id = request.into_inner().service;
        let read = match &self.pool {
            Pool::Sqlite(p) => {
                sqlx::query_scalar::<_, Vec<u8>>(READ)
                    .bind(&self.tenant_id)
                    .bind(&id)
                    .fetch_one(p)
                    .await
            }
            Pool::Postgres(p) => {
                sqlx::query_scalar::<_, Vec<u8>>(READ)
                    .bind(&self.tenant_id)
                    .bind(&id)
                    .fetch_one(p)
                    .await
            }
            Pool::OnCaller(conns) => Ok(read_on_caller(conns, &self.tenant_id, &id)),
        };
        let sealed = read.map_err(|e| Status::internal(e.to_string()))?;
        std::hint::black_box(sealed);
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving.into(),
        }))
    }

    type WatchStream = tokio_stream::wrappers::ReceiverStream<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("the floor only reads"))
    }
}

/// The read, on this thread, with the first connection no other caller holds.
fn read_on_caller(
    conns: &[std::sync::Mutex<rusqlite::Connection>],
    tenant: &str,
    id: &str,
) -> Vec<u8> {
    let conn = conns
        .iter()
        .find_map(|c| c.try_lock().ok())
        .unwrap_or_else(|| conns[0].lock().unwrap());
    let mut read = conn.prepare_cached(READ).unwrap();
    read.query_row((tenant, id), |row| row.get(0)).unwrap()
}

/// `n` rusqlite connections to the SQLite database at `database_url`.
fn on_caller(database_url: &str, n: u32) -> Pool {
    let path = database_url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap();
    let open = || {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        std::sync::Mutex::new(conn)
    };
    Pool::OnCaller((0..n.max(1)).map(|_| open()).collect())
}

/// Serves the floor on a free loopback port, reading `database_url` as the vault's
/// readers do (SQLite: WAL, as many connections as the vault's reader pool), or on
/// SQLite with rusqlite on the calling thread if `on_caller_thread`.
pub async fn start(
    database_url: &str,
    tenant_id: String,
    readers: u32,
    on_caller_thread: bool,
) -> std::net::SocketAddr {
    let pool = if database_url.starts_with("sqlite:") && on_caller_thread {
        on_caller(database_url, readers)
    } else if database_url.starts_with("sqlite:") {
        let options: sqlx::sqlite::SqliteConnectOptions = database_url.parse().unwrap();
        let options = options
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(5));
        Pool::Sqlite(
            sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(readers)
                .connect_with(options)
                .await
                .unwrap(),
        )
    } else {
        Pool::Postgres(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(readers)
                .connect(database_url)
                .await
                .unwrap(),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = HealthServer::new(Floor { pool, tenant_id });
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming),
    );
    addr
}
