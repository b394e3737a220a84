//! `credvault proxy`: one provider call through ProxyService, the credential put in
//! by the vault.
use std::io::{Read, Write};

use anyhow::Context;
use base64::Engine as _;
use clap::Args;
use serde_json::json;

use credvault::proto::v1 as pb;

use super::client::{self, print_json, status};
use crate::ClientArgs;

#[derive(Args)]
pub struct ProxyArgs {
    /// The credential whose secret the call carries (cred_…).
    credential_id: String,
    /// GET, HEAD, POST, PUT, PATCH or DELETE.
    method: String,
    /// Relative to the provider's API base URL, e.g. /v1/customers.
    path: String,
    /// A query parameter KEY=VALUE (repeatable).
    #[arg(long = "query", value_parser = client::parse_label)]
    query: Vec<(String, String)>,
    /// A request header NAME:VALUE (repeatable).
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// The request body; `@FILE` reads a file, `-` reads stdin.
    #[arg(long)]
    body: Option<String>,
    /// Recorded in the audit log with the call.
    #[arg(long, default_value = "")]
    request_id: String,
    /// Write only the response body to stdout, as received (status on stderr).
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    client: ClientArgs,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    s.split_once(':')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .ok_or_else(|| "expected NAME:VALUE".to_owned())
}

fn read_body(body: Option<String>) -> anyhow::Result<Vec<u8>> {
    match body.as_deref() {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            Ok(buf)
        }
        Some(text) => match text.strip_prefix('@') {
            Some(path) => std::fs::read(path).with_context(|| format!("reading {path}")),
            None => Ok(text.as_bytes().to_vec()),
        },
    }
}

/// The body for JSON output: parsed JSON, else text, else base64.
fn body_json(body: &[u8]) -> serde_json::Value {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        return value;
    }
    match std::str::from_utf8(body) {
        Ok(text) => json!(text),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(body) }),
    }
}

pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let request = pb::ProxyCallRequest {
        credential_id: args.credential_id,
        method: args.method,
        path: args.path,
        query: args
            .query
            .into_iter()
            .map(|(name, value)| pb::QueryParam { name, value })
            .collect(),
        headers: args
            .headers
            .into_iter()
            .map(|(name, value)| pb::HttpHeader { name, value })
            .collect(),
        body: read_body(args.body)?,
        request_id: args.request_id,
    };
    let mut c = client::proxy(&args.client).await?;
    let mut stream = c.call(request).await.map_err(status)?.into_inner();
    let (mut head, mut body) = (None, Vec::new());
    let mut stdout = std::io::stdout().lock();
    while let Some(message) = stream.message().await.map_err(status)? {
        if head.is_none() {
            if args.raw {
                eprintln!("HTTP {}", message.status);
            }
            head = Some((message.status, message.headers));
        }
        if args.raw {
            stdout.write_all(&message.body)?;
        } else {
            body.extend_from_slice(&message.body);
        }
    }
    if args.raw {
        return Ok(stdout.flush()?);
    }
    let (code, headers) = head.unwrap_or_default();
    let headers: Vec<_> = headers
        .iter()
        .map(|h| json!({ "name": h.name, "value": h.value }))
        .collect();
    print_json(&json!({ "status": code, "headers": headers, "body": body_json(&body) }));
    Ok(())
}
