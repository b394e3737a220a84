//! Traces: the caller's W3C `traceparent` (gRPC metadata, HTTP headers) becomes the
//! parent of the vault's span, that span's context goes on to providers and webhook
//! receivers, and with `otlp_endpoint` the spans reach an OTLP/HTTP collector — here
//! an in-process one that decodes the protobuf export, fed by the real binary. (The
//! in-process server runs under the test subscriber, which carries the OpenTelemetry
//! layer as the binary does when `otlp_endpoint` is set.)
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use credvault::proto::v1 as pb;
use prost::Message;

use crate::fake_provider::FakeProvider;
use crate::fixtures::*;
use crate::oauth::{MINUTE, register, seed};
use crate::receiver::Receiver;
use crate::support::{Backend, spawn_app};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace_id: &str) -> String {
    format!("00-{trace_id}-{CALLER_SPAN}-01")
}

/// (trace id, parent span id) of a well-formed sampled `traceparent`.
fn parts(header: &str) -> (String, String) {
    let fields: Vec<&str> = header.split('-').collect();
    assert_eq!(fields.len(), 4, "{header:?}");
    assert_eq!((fields[0], fields[3]), ("00", "01"), "{header}");
    assert_eq!((fields[1].len(), fields[2].len()), (32, 16), "{header}");
    assert!(
        fields[1]
            .chars()
            .chain(fields[2].chars())
            .all(|c| c.is_ascii_hexdigit())
    );
    assert_ne!(fields[2], "0000000000000000", "{header}");
    (fields[1].to_owned(), fields[2].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_trace_goes_on_to_providers_and_webhooks_carry_the_vaults() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let fake = FakeProvider::start().await;
    let t = app.tenant("acme").await;
    register(&app, &t, &fake, "crm").await;
    let mut c = app.client(&t.token).await;
    let (id, _) = seed(&app, &mut c, &fake, "crm", 30 * MINUTE).await;
    app.clock.advance_ms(31 * MINUTE);

    // The reveal refreshes the expired token: the token request joins the caller's
    // trace, as a child of the vault's span (not of the caller's).
    let mut request = tonic::Request::new(reveal(&id));
    request
        .metadata_mut()
        .insert("traceparent", traceparent(TRACE_ID).parse().unwrap());
    c.reveal_credential(request).await.unwrap();
    let sent = fake.with(|i| i.traceparents.last().cloned()).unwrap();
    let (trace, parent) = parts(&sent);
    assert_eq!(trace, TRACE_ID, "{sent}");
    assert_ne!(parent, CALLER_SPAN, "the vault's own span is the parent");

    // Without a traceparent (or with a malformed one) the vault starts a trace.
    for header in [None, Some("00-zz-00f067aa0ba902b7-01")] {
        app.clock.advance_ms(61 * MINUTE);
        let mut request = tonic::Request::new(reveal(&id));
        if let Some(h) = header {
            request
                .metadata_mut()
                .insert("traceparent", h.parse().unwrap());
        }
        c.reveal_credential(request).await.unwrap();
        let sent = fake.with(|i| i.traceparents.last().cloned()).unwrap();
        assert_ne!(parts(&sent).0, TRACE_ID, "{header:?}");
    }

    // A webhook delivery carries the context of the job that sent it.
    let receiver = Receiver::start().await;
    let mut w = app.webhooks(&t.token).await;
    w.create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
        url: receiver.url(),
        event_types: vec![],
    })
    .await
    .unwrap();
    let mut expiring = create("ada", api_key("k"));
    expiring.expires_at = Some(ts(credvault::clock::Clock::now_ms(&app.clock) + 1_000));
    c.create_credential(expiring).await.unwrap();
    app.clock.advance_ms(2_000);
    app.vault.scan_expiries(100).await.unwrap();
    credvault::workers::deliverer::run_pass(&app.vault, 100, 4)
        .await
        .unwrap();
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    parts(&received[0].traceparent);
}

// ------------------------------------------------------------ OTLP receiver

/// Just enough of `opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest`
/// to read what was exported (unknown fields are skipped by prost).
mod otlp {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportTraceServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_spans: Vec<ResourceSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceSpans {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_spans: Vec<ScopeSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeSpans {
        #[prost(message, repeated, tag = "2")]
        pub spans: Vec<Span>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Span {
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub span_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "4")]
        pub parent_span_id: Vec<u8>,
        #[prost(string, tag = "5")]
        pub name: String,
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(string, tag = "1")]
        pub string_value: String,
        #[prost(int64, tag = "3")]
        pub int_value: i64,
    }
}

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Exported {
    trace_id: String,
    parent_span_id: String,
    name: String,
    attributes: BTreeMap<String, String>,
    resource: BTreeMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn flatten(attributes: &[otlp::KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            let v = kv.value.clone().unwrap_or_default();
            let text = if v.string_value.is_empty() {
                v.int_value.to_string()
            } else {
                v.string_value
            };
            (kv.key.clone(), text)
        })
        .collect()
}

type Collected = Arc<Mutex<Vec<Exported>>>;

async fn collect(State(spans): State<Collected>, body: Bytes) -> &'static str {
    let request = otlp::ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
    let mut spans = spans.lock().unwrap();
    for rs in request.resource_spans {
        let resource = flatten(&rs.resource.unwrap_or_default().attributes);
        for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
            spans.push(Exported {
                trace_id: hex(&span.trace_id),
                parent_span_id: hex(&span.parent_span_id),
                name: span.name,
                attributes: flatten(&span.attributes),
                resource: resource.clone(),
            });
        }
    }
    ""
}

async fn start_collector() -> (std::net::SocketAddr, Collected) {
    let spans = Collected::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(collect))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, spans)
}

/// The value after `key=` in a log line.
fn field(line: &str, key: &str) -> String {
    let start = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("{key} in {line}"))
        + key.len()
        + 1;
    line[start..].split_whitespace().next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_with_the_callers_trace_as_parent() {
    use tokio::io::AsyncBufReadExt;
    let (collector, spans) = start_collector().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_credvault"))
        .arg("serve")
        .env_clear()
        .env("CREDVAULT_DATA_DIR", dir.path().join("data"))
        .env("CREDVAULT_LISTEN", "127.0.0.1:0")
        .env("CREDVAULT_HTTP_LISTEN", "127.0.0.1:0")
        .env("CREDVAULT_OTLP_ENDPOINT", format!("http://{collector}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let serving = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("credvault serving gRPC") {
                return line;
            }
        }
        panic!("serve ended before serving");
    };
    let line = tokio::time::timeout(std::time::Duration::from_secs(60), serving)
        .await
        .expect("serve starts");
    let (grpc, http) = (field(&line, "addr"), field(&line, "http"));
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let token = loop {
        let line = stdout
            .next_line()
            .await
            .unwrap()
            .expect("the bootstrap token is printed");
        if let Some(secret) = line.trim().strip_prefix("export CREDVAULT_TOKEN=") {
            break secret.to_owned();
        }
    };

    // One gRPC call and one page request, each in a trace of the caller's.
    let http_trace = "0af7651916cd43dd8448eb211c80319c";
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut admin = pb::admin_service_client::AdminServiceClient::new(channel);
    let mut request = tonic::Request::new(pb::ListTenantsRequest::default());
    let metadata = request.metadata_mut();
    metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
    metadata.insert("traceparent", traceparent(TRACE_ID).parse().unwrap());
    metadata.insert("x-request-id", "req-otlp-1".parse().unwrap());
    let tenants = admin
        .list_tenants(request)
        .await
        .unwrap()
        .into_inner()
        .tenants;
    let page = reqwest::Client::new()
        .get(format!("http://{http}/connect/assets/connect.css"))
        .header("traceparent", traceparent(http_trace))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);

    // A graceful stop flushes the queued spans.
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");

    let spans = spans.lock().unwrap().clone();
    let rpc = spans
        .iter()
        .find(|s| s.name == "credvault.v1.AdminService/ListTenants")
        .unwrap_or_else(|| panic!("no ListTenants span in {spans:#?}"));
    assert_eq!(
        (rpc.trace_id.as_str(), rpc.parent_span_id.as_str()),
        (TRACE_ID, CALLER_SPAN)
    );
    for (key, want) in [
        ("rpc.system", "grpc"),
        ("rpc.service", "credvault.v1.AdminService"),
        ("rpc.method", "ListTenants"),
        ("tenant", tenants[0].id.as_str()),
        ("request_id", "req-otlp-1"),
        ("outcome", "OK"),
    ] {
        assert_eq!(
            rpc.attributes.get(key).map(String::as_str),
            Some(want),
            "{key}: {rpc:#?}"
        );
    }
    assert_eq!(
        rpc.resource.get("service.name").map(String::as_str),
        Some("credvault")
    );
    let page = spans
        .iter()
        .find(|s| s.trace_id == http_trace)
        .unwrap_or_else(|| panic!("no span of the page request in {spans:#?}"));
    assert_eq!(
        (page.name.as_str(), page.parent_span_id.as_str()),
        ("GET /connect/assets/connect.css", CALLER_SPAN)
    );
    assert_eq!(
        page.attributes
            .get("http.response.status_code")
            .map(String::as_str),
        Some("200")
    );
    // No span carries the token.
    assert!(!format!("{spans:?}").contains(&token));
}
