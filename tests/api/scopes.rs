//! Every RPC of every service against every scope, from one table: a token without
//! the RPC's scope is PERMISSION_DENIED, a token with it gets past authorization. The
//! table is checked against the served descriptors, so a new RPC without an entry
//! fails this test.
use std::collections::BTreeSet;

use credvault::model::Scope;
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

use crate::both_backends;

/// Which scopes open each RPC (any one of them).
const REQUIRED: &[(&str, &[&str])] = &[
    (
        "credvault.v1.CredentialService/CreateCredential",
        &["credentials:write"],
    ),
    (
        "credvault.v1.CredentialService/GetCredential",
        &["credentials:read"],
    ),
    (
        "credvault.v1.CredentialService/ListCredentials",
        &["credentials:read"],
    ),
    (
        "credvault.v1.CredentialService/UpdateCredential",
        &["credentials:write"],
    ),
    (
        "credvault.v1.CredentialService/DeleteCredential",
        &["credentials:write"],
    ),
    (
        "credvault.v1.CredentialService/RevealCredential",
        &["credentials:reveal"],
    ),
    (
        "credvault.v1.CredentialService/RefreshCredential",
        &["credentials:write"],
    ),
    ("credvault.v1.ProxyService/Call", &["credentials:proxy"]),
    (
        "credvault.v1.OAuthService/CreateProvider",
        &["providers:write"],
    ),
    ("credvault.v1.OAuthService/GetProvider", &["providers:read"]),
    (
        "credvault.v1.OAuthService/ListProviders",
        &["providers:read"],
    ),
    (
        "credvault.v1.OAuthService/UpdateProvider",
        &["providers:write"],
    ),
    (
        "credvault.v1.OAuthService/DeleteProvider",
        &["providers:write"],
    ),
    (
        "credvault.v1.OAuthService/ListProviderTemplates",
        &["providers:read"],
    ),
    (
        "credvault.v1.OAuthService/StartOAuth",
        &["credentials:write"],
    ),
    (
        "credvault.v1.WebhookService/CreateWebhookEndpoint",
        &["webhooks:write"],
    ),
    (
        "credvault.v1.WebhookService/ListWebhookEndpoints",
        &["webhooks:read"],
    ),
    (
        "credvault.v1.WebhookService/UpdateWebhookEndpoint",
        &["webhooks:write"],
    ),
    (
        "credvault.v1.WebhookService/DeleteWebhookEndpoint",
        &["webhooks:write"],
    ),
    (
        "credvault.v1.WebhookService/RotateWebhookSecret",
        &["webhooks:write"],
    ),
    ("credvault.v1.WebhookService/ListEvents", &["webhooks:read"]),
    (
        "credvault.v1.WebhookService/ListDeliveries",
        &["webhooks:read"],
    ),
    (
        "credvault.v1.WebhookService/RedeliverEvent",
        &["webhooks:write"],
    ),
    (
        "credvault.v1.WebhookService/ReplayDeadLetters",
        &["webhooks:write"],
    ),
    (
        "credvault.v1.WebhookService/WatchEvents",
        &["webhooks:read"],
    ),
    (
        "credvault.v1.ConnectService/CreateConnectLink",
        &["connect:write"],
    ),
    (
        "credvault.v1.ConnectService/GetConnectLink",
        &["connect:read"],
    ),
    (
        "credvault.v1.ConnectService/ListConnectLinks",
        &["connect:read"],
    ),
    (
        "credvault.v1.ConnectService/RevokeConnectLink",
        &["connect:write"],
    ),
    (
        "credvault.v1.ConnectService/GetConnectSettings",
        &["admin", "tenant:admin"],
    ),
    (
        "credvault.v1.ConnectService/SetConnectSettings",
        &["admin", "tenant:admin"],
    ),
    (
        "credvault.v1.ConnectService/RotateConnectSecret",
        &["admin", "tenant:admin"],
    ),
    ("credvault.v1.UserService/RegisterUser", &["users:write"]),
    ("credvault.v1.UserService/GetUser", &["users:read"]),
    ("credvault.v1.UserService/ListUsers", &["users:read"]),
    ("credvault.v1.UserService/UpdateUser", &["users:write"]),
    ("credvault.v1.UserService/DeleteUser", &["users:write"]),
    (
        "credvault.v1.ExternalAuthService/CreateConnector",
        &["auth:admin"],
    ),
    (
        "credvault.v1.ExternalAuthService/UpdateConnector",
        &["auth:admin"],
    ),
    (
        "credvault.v1.ExternalAuthService/GetConnector",
        &["auth:admin"],
    ),
    (
        "credvault.v1.ExternalAuthService/ListConnectors",
        &["auth:admin"],
    ),
    (
        "credvault.v1.ExternalAuthService/DeleteConnector",
        &["auth:admin"],
    ),
    (
        "credvault.v1.ExternalAuthService/Authenticate",
        &["auth:login"],
    ),
    (
        "credvault.v1.ExternalAuthService/ForgotPassword",
        &["auth:login"],
    ),
    ("credvault.v1.AdminService/CreateTenant", &["admin"]),
    ("credvault.v1.AdminService/ListTenants", &["admin"]),
    ("credvault.v1.AdminService/DeleteTenant", &["admin"]),
    ("credvault.v1.AdminService/GetKeyStatus", &["admin"]),
    ("credvault.v1.AdminService/ActivateKey", &["admin"]),
    ("credvault.v1.AdminService/RetireKey", &["admin"]),
    ("credvault.v1.AdminService/RewrapSecrets", &["admin"]),
    (
        "credvault.v1.AuditService/ListAuditRecords",
        &["audit:read", "admin"],
    ),
    (
        "credvault.v1.AuditService/VerifyAuditLog",
        &["audit:read", "admin"],
    ),
    (
        "credvault.v1.AdminService/CreateServiceToken",
        &["admin", "tenant:admin"],
    ),
    (
        "credvault.v1.AdminService/ListServiceTokens",
        &["admin", "tenant:admin"],
    ),
    (
        "credvault.v1.AdminService/RevokeServiceToken",
        &["admin", "tenant:admin"],
    ),
];

/// Every RPC the server's descriptors declare: `(path, server-streaming)`.
fn served_rpcs() -> Vec<(String, bool)> {
    let set =
        prost_types::FileDescriptorSet::decode(credvault::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut rpcs = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == "credvault.v1") {
        for service in &file.service {
            for method in &service.method {
                let path = format!("credvault.v1.{}/{}", service.name(), method.name());
                rpcs.push((path, method.server_streaming()));
            }
        }
    }
    rpcs
}

/// Calls `path` with an empty request (every field at its default) as `token`.
async fn call(
    channel: Channel,
    path: &str,
    streaming: bool,
    token: &str,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let path: http::uri::PathAndQuery = format!("/{path}").parse().unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    if streaming {
        grpc.server_streaming(request, path, codec)
            .await
            .map(|_| ())
    } else {
        grpc.unary(request, path, codec).await.map(|_| ())
    }
}

both_backends! {
    async fn every_rpc_needs_its_scope_and_no_other(app) {
        let rpcs = served_rpcs();
        let served: BTreeSet<&str> = rpcs.iter().map(|(p, _)| p.as_str()).collect();
        let listed: BTreeSet<&str> = REQUIRED.iter().map(|(p, _)| *p).collect();
        assert_eq!(served, listed, "every served RPC has exactly one entry in REQUIRED");

        let t = app.tenant("acme").await;
        let channel = Channel::from_shared(format!("http://{}", app.addr)).unwrap().connect().await.unwrap();
        let before = (app.rows("credentials").await, app.rows("service_tokens").await);
        for scope in Scope::ALL {
            let token = app.token(&t, &[scope.as_str()]).await;
            let token = secrecy::ExposeSecret::expose_secret(&token).to_owned();
            for (path, streaming) in &rpcs {
                let allowed = REQUIRED.iter().find(|(p, _)| p == path).unwrap().1;
                let result = call(channel.clone(), path, *streaming, &token).await;
                let code = result.as_ref().err().map(tonic::Status::code);
                if allowed.contains(&scope.as_str()) {
                    assert!(
                        !matches!(code, Some(Code::PermissionDenied | Code::Unauthenticated | Code::Unimplemented)),
                        "{path} with {}: {result:?}", scope.as_str()
                    );
                } else {
                    let status = result.expect_err(path);
                    assert_eq!(status.code(), Code::PermissionDenied, "{path} with {}", scope.as_str());
                    assert!(status.message().contains("scope"), "{}", status.message());
                }
            }
        }
        let tokens_minted = Scope::ALL.len() as i64;
        assert_eq!(app.rows("credentials").await, before.0, "empty requests stored nothing");
        assert_eq!(app.rows("service_tokens").await, before.1 + tokens_minted);
    }
}
