//! `grpc.health.v1.Health` that lets go on shutdown: tonic-health's Watch streams
//! never end by themselves, so a server draining its connections would wait on them
//! forever. Here each Watch stream, once shutdown begins, sends NOT_SERVING and ends
//! (status OK, which tells clients to reconnect with backoff, to another replica).
use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

use crate::shutdown::Shutdown;

pub struct DrainingHealth {
    inner: HealthService,
    stop: Shutdown,
}

/// The health service over `reporter`'s statuses, ending its Watch streams on `stop`.
pub fn service(reporter: HealthReporter, stop: Shutdown) -> HealthServer<DrainingHealth> {
    HealthServer::new(DrainingHealth {
        inner: HealthService::from_health_reporter(reporter),
        stop,
    })
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for DrainingHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let statuses = self.inner.watch(request).await?.into_inner();
        let stop = self.stop.clone();
        let last = HealthCheckResponse {
            status: ServingStatus::NotServing as i32,
        };
        let stream = statuses
            .take_until(async move { stop.wait().await })
            .chain(futures::stream::once(async move { Ok(last) }));
        Ok(Response::new(Box::pin(stream)))
    }
}
