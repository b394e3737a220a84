//! Tenant B cannot see or touch tenant A's credentials, providers, webhook endpoints,
//! events or deliveries, and cannot tell them from missing ones.
use credvault::proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::both_backends;
use crate::fixtures::*;
use crate::receiver::Receiver;

both_backends! {
    async fn another_tenants_credential_is_indistinguishable_from_a_missing_one(app) {
        let a = app.tenant("acme").await;
        let b = app.tenant("globex").await;
        let mut ca = app.client(&a.token).await;
        let mut cb = app.client(&b.token).await;
        let id = ca.create_credential(create("shared-user", api_key("acme-secret"))).await.unwrap().into_inner().id;
        cb.create_credential(create("shared-user", api_key("globex-secret"))).await.unwrap();

        let mut rename = update(&id);
        rename.name = Some("hijacked".into());
        let from_b = [
            code_of(cb.get_credential(get(&id)).await),
            code_of(cb.reveal_credential(reveal(&id)).await),
            code_of(cb.update_credential(rename.clone()).await),
            code_of(cb.delete_credential(delete(&id)).await),
        ];
        let listed = cb
            .list_credentials(pb::ListCredentialsRequest { user_id: "shared-user".into(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.credentials.len(), 1);
        assert!(listed.credentials.iter().all(|c| c.id != id));

        // A is untouched by all of it.
        let still = ca.get_credential(get(&id)).await.unwrap().into_inner();
        assert_eq!((still.name.as_str(), still.version), ("shared-user's Salesforce", 1));
        let secret = ca.reveal_credential(reveal(&id)).await.unwrap().into_inner().secret;
        assert_eq!(secret, Some(api_key("acme-secret")));

        // Now make the id really missing and ask again: the answers are byte-identical.
        ca.delete_credential(delete(&id)).await.unwrap();
        let missing = [
            code_of(ca.get_credential(get(&id)).await),
            code_of(ca.reveal_credential(reveal(&id)).await),
            code_of(ca.update_credential(rename).await),
            code_of(ca.delete_credential(delete(&id)).await),
        ];
        assert_eq!(from_b, missing);
        assert!(from_b.iter().all(|(code, _)| *code == Code::NotFound));
    }

    async fn providers_endpoints_events_and_deliveries_are_tenant_private(app) {
        let receiver = Receiver::start().await;
        let a = app.tenant("acme").await;
        let b = app.tenant("globex").await;
        let mut oa = app.oauth(&a.token).await;
        let mut ob = app.oauth(&b.token).await;
        oa.create_provider(pb::CreateProviderRequest {
            slug: "crm".into(),
            template: "hubspot".into(),
            client_id: "acme-client".into(),
            client_secret: "acme-client-secret".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let (mut wa, mut wb) = (app.webhooks(&a.token).await, app.webhooks(&b.token).await);
        let endpoint = wa
            .create_webhook_endpoint(pb::CreateWebhookEndpointRequest { url: receiver.url(), event_types: vec![] })
            .await
            .unwrap()
            .into_inner()
            .endpoint
            .unwrap();
        // An event and a delivery of A's: its credential expires.
        let mut ca = app.client(&a.token).await;
        let mut req = create("ada", api_key("k"));
        req.expires_at = Some(ts(credvault::clock::Clock::now_ms(&app.clock) + 1_000));
        ca.create_credential(req).await.unwrap();
        app.clock.advance_ms(2_000);
        app.vault.scan_expiries(100).await.unwrap();
        credvault::workers::deliverer::run_pass(&app.vault, 100, 4).await.unwrap();
        let event = wa.list_events(pb::ListEventsRequest::default()).await.unwrap().into_inner().events[0].clone();

        // B sees none of it, and what it names answers like what is missing.
        assert!(ob.list_providers(pb::ListProvidersRequest::default()).await.unwrap().into_inner().providers.is_empty());
        assert!(wb.list_webhook_endpoints(pb::ListWebhookEndpointsRequest::default()).await.unwrap().into_inner().endpoints.is_empty());
        assert!(wb.list_events(pb::ListEventsRequest::default()).await.unwrap().into_inner().events.is_empty());
        assert!(wb.list_deliveries(pb::ListDeliveriesRequest::default()).await.unwrap().into_inner().deliveries.is_empty());
        let filtered = pb::ListDeliveriesRequest { event_id: event.id.clone(), ..Default::default() };
        assert!(wb.list_deliveries(filtered).await.unwrap().into_inner().deliveries.is_empty());
        let slug = || "crm".to_owned();
        for (code, message) in [
            code_of(ob.get_provider(pb::GetProviderRequest { slug: slug() }).await),
            code_of(ob.update_provider(pb::UpdateProviderRequest { slug: slug(), client_id: Some("x".into()), ..Default::default() }).await),
            code_of(ob.delete_provider(pb::DeleteProviderRequest { slug: slug() }).await),
            code_of(wb.update_webhook_endpoint(pb::UpdateWebhookEndpointRequest { id: endpoint.id.clone(), enabled: Some(false), ..Default::default() }).await),
            code_of(wb.rotate_webhook_secret(pb::RotateWebhookSecretRequest { id: endpoint.id.clone(), overlap_seconds: None }).await),
            code_of(wb.delete_webhook_endpoint(pb::DeleteWebhookEndpointRequest { id: endpoint.id.clone() }).await),
            code_of(wb.redeliver_event(pb::RedeliverEventRequest { event_id: event.id.clone() }).await),
        ] {
            assert_eq!(code, Code::NotFound, "{message}");
        }
        // B's replay touches only B's dead letters; B's watch never sees A's events.
        let replayed = wb.replay_dead_letters(pb::ReplayDeadLettersRequest { endpoint_id: endpoint.id.clone() }).await;
        assert!(replayed.map(|r| r.into_inner().requeued == 0).unwrap_or(true));
        let mut watch = wb
            .watch_events(pb::WatchEventsRequest { after_event_id: String::new() })
            .await
            .unwrap()
            .into_inner();
        let mut resumed = wb.watch_events(pb::WatchEventsRequest { after_event_id: event.id.clone() }).await;
        if let Ok(stream) = resumed.as_mut() {
            let got = tokio::time::timeout(std::time::Duration::from_millis(600), stream.get_mut().next()).await;
            assert!(got.is_err(), "nothing from A's log: {got:?}");
        }
        // A new event of A's does not reach B's open watch.
        let mut req = create("bob", api_key("k"));
        req.expires_at = Some(ts(credvault::clock::Clock::now_ms(&app.clock) + 1_000));
        ca.create_credential(req).await.unwrap();
        app.clock.advance_ms(2_000);
        app.vault.scan_expiries(100).await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_millis(600), watch.next()).await;
        assert!(got.is_err(), "B's watch saw an event: {got:?}");

        // A's things are as they were.
        assert_eq!(oa.get_provider(pb::GetProviderRequest { slug: slug() }).await.unwrap().into_inner().client_id, "acme-client");
        assert!(wa.list_webhook_endpoints(pb::ListWebhookEndpointsRequest::default()).await.unwrap().into_inner().endpoints[0].enabled);
        assert_eq!(receiver.received().len(), 1);
    }
}
