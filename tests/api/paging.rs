//! Every list RPC pages: tenants, service tokens, providers and webhook endpoints
//! (credentials, users, events, deliveries and links have their own tests). Each is
//! walked two at a time and must give what one big page gives, in key order, with
//! no item twice; a forged or foreign page token and an oversized page are refused.
use std::future::Future;

use credvault::proto::v1 as pb;
use tonic::{Code, Status};

use crate::both_backends;
use crate::fixtures::code_of;

/// Walks a listing `size` at a time; returns every key in order and the pages it took.
async fn walk<Fut>(size: i32, mut page: impl FnMut(i32, String) -> Fut) -> (Vec<String>, usize)
where
    Fut: Future<Output = Result<(Vec<String>, String), Status>>,
{
    let (mut keys, mut pages, mut token) = (Vec::new(), 0, String::new());
    loop {
        let (items, next) = page(size, token).await.unwrap();
        assert!(items.len() <= size as usize, "a page longer than asked");
        keys.extend(items);
        pages += 1;
        if next.is_empty() {
            return (keys, pages);
        }
        token = next;
    }
}

/// The listing walked in pages of 2 equals one page of 1000, sorted, no repeats;
/// then bad page requests are refused. `foreign` is a token of another listing.
async fn check<Fut>(
    what: &str,
    want: usize,
    foreign: &str,
    mut page: impl FnMut(i32, String) -> Fut,
) where
    Fut: Future<Output = Result<(Vec<String>, String), Status>>,
{
    let (all, one) = walk(1000, &mut page).await;
    assert_eq!((all.len(), one), (want, 1), "{what}: {all:?}");
    let (paged, pages) = walk(2, &mut page).await;
    assert_eq!(paged, all, "{what}: pages of 2 give what one page gives");
    assert_eq!(pages, want.div_ceil(2), "{what}");
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, all, "{what}: in key order, each once");
    for (size, token, field) in [
        (0, "bm9wZQ", "page_token:"),
        (0, foreign, "page_token:"),
        (1001, "", "page_size:"),
    ] {
        let (code, message) = code_of(page(size, token.to_owned()).await.map(tonic::Response::new));
        assert_eq!(code, Code::InvalidArgument, "{what} {size} {token}");
        assert!(message.starts_with(field), "{what}: {message}");
    }
}

both_backends! {
    async fn tenants_tokens_providers_and_endpoints_page(app) {
        let t = app.tenant("acme").await;
        for name in ["globex", "initech"] {
            app.vault.create_tenant(&credvault::service::Caller::operator(), name).await.unwrap();
        }
        for _ in 0..4 {
            app.token(&t, &["credentials:read"]).await;
        }
        let mut oauth = app.oauth(&t.token).await;
        for slug in ["crm", "mail", "sheets", "chat", "ads"] {
            oauth.create_provider(pb::CreateProviderRequest {
                slug: slug.into(),
                template: "hubspot".into(),
                client_id: "client".into(),
                client_secret: "client-secret".into(),
                ..Default::default()
            }).await.unwrap();
        }
        let webhooks = app.webhooks(&t.token).await;
        for n in 0..3 {
            let mut w = webhooks.clone();
            w.create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
                url: format!("http://127.0.0.1:9/hook-{n}"),
                event_types: vec![],
            }).await.unwrap();
        }
        // A page token of the provider listing, to hand to the others.
        let provider_token = oauth.list_providers(pb::ListProvidersRequest { page_size: 1, ..Default::default() })
            .await.unwrap().into_inner().next_page_token;
        assert!(!provider_token.is_empty());

        let admin = app.admin(&app.admin_token).await;
        // The bootstrap tenant, acme, globex and initech.
        check("tenants", 4, &provider_token, |page_size, page_token| {
            let mut c = admin.clone();
            async move {
                let r = c.list_tenants(pb::ListTenantsRequest { page_size, page_token }).await?.into_inner();
                Ok((r.tenants.into_iter().map(|t| t.id).collect(), r.next_page_token))
            }
        }).await;
        // acme's own token and the four minted above.
        let tenant = t.id.clone();
        check("tokens", 5, &provider_token, |page_size, page_token| {
            let (mut c, tenant) = (admin.clone(), tenant.clone());
            async move {
                let request = pb::ListServiceTokensRequest { tenant, page_size, page_token };
                let r = c.list_service_tokens(request).await?.into_inner();
                Ok((r.tokens.into_iter().map(|t| t.id).collect(), r.next_page_token))
            }
        }).await;
        let tenants_token = admin.clone().list_tenants(pb::ListTenantsRequest { page_size: 1, ..Default::default() })
            .await.unwrap().into_inner().next_page_token;
        check("providers", 5, "IQ", |page_size, page_token| {
            let mut c = oauth.clone();
            async move {
                let r = c.list_providers(pb::ListProvidersRequest { page_size, page_token }).await?.into_inner();
                Ok((r.providers.into_iter().map(|p| p.slug).collect(), r.next_page_token))
            }
        }).await;
        check("endpoints", 3, &tenants_token, |page_size, page_token| {
            let mut c = webhooks.clone();
            async move {
                let request = pb::ListWebhookEndpointsRequest { page_size, page_token };
                let r = c.list_webhook_endpoints(request).await?.into_inner();
                Ok((r.endpoints.into_iter().map(|e| e.id).collect(), r.next_page_token))
            }
        }).await;
    }
}
