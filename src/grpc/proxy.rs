use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tonic::{Request, Response, Status};

use super::authorize;
use crate::model::Scope;
use crate::proto::v1::{self as pb, proxy_service_server::ProxyService};
use crate::service::proxy::{Answer, Proxy, ProxyCall};

/// The most body one streamed message carries: under the default 1 MiB message limit
/// with room for the status and headers.
const CHUNK_BYTES: usize = 960 * 1024;

/// `credvault.v1.ProxyService`.
pub struct ProxyApi {
    proxy: Proxy,
}

impl ProxyApi {
    pub fn new(proxy: Proxy) -> Self {
        Self { proxy }
    }
}

type CallStream = Pin<Box<dyn Stream<Item = Result<pb::ProxyCallResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ProxyService for ProxyApi {
    type CallStream = CallStream;

    async fn call(
        &self,
        req: Request<pb::ProxyCallRequest>,
    ) -> Result<Response<CallStream>, Status> {
        let caller = authorize(self.proxy.vault(), &req, Scope::CredentialsProxy).await?;
        let r = req.into_inner();
        let call = ProxyCall {
            credential_id: r.credential_id,
            method: r.method,
            path: r.path,
            query: r.query.into_iter().map(|q| (q.name, q.value)).collect(),
            headers: r.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            body: r.body.into(),
            request_id: r.request_id,
        };
        let answer = self.proxy.call(&caller, call).await?;
        tracing::info!(tenant = %caller.tenant_id, actor = %caller.token_id, status = answer.status, "provider called through the proxy");
        Ok(Response::new(stream(answer)))
    }
}

/// The answer as messages: the first with status and headers, each with up to
/// [`CHUNK_BYTES`] of body, the first even when the body is empty.
fn stream(answer: Answer) -> CallStream {
    let state = (Some(answer), true, BytesMut::new());
    Box::pin(futures::stream::unfold(
        state,
        |(answer, first, mut pending)| async move {
            let mut answer = answer?;
            let mut ended = false;
            while pending.len() < CHUNK_BYTES {
                match answer.chunk().await {
                    Ok(Some(chunk)) => pending.extend_from_slice(&chunk),
                    Ok(None) => {
                        ended = true;
                        break;
                    }
                    Err(e) => return Some((Err(e.into()), (None, false, BytesMut::new()))),
                }
            }
            if !first && pending.is_empty() {
                return None;
            }
            let take = pending.len().min(CHUNK_BYTES);
            let body: Bytes = pending.split_to(take).freeze();
            let message = pb::ProxyCallResponse {
                status: if first { i32::from(answer.status) } else { 0 },
                headers: if first {
                    answer
                        .headers
                        .iter()
                        .map(|(name, value)| pb::HttpHeader {
                            name: name.clone(),
                            value: value.clone(),
                        })
                        .collect()
                } else {
                    Vec::new()
                },
                body: body.to_vec(),
            };
            let next = if ended && pending.is_empty() {
                None
            } else {
                Some(answer)
            };
            Some((Ok(message), (next, false, pending)))
        },
    ))
}
