//! `credvault auth connector …`: external auth connectors (ExternalAuthService),
//! configured from a JSON file shaped like the `Connector` message (see
//! docs/external-auth.md). `get` and `list` print the same shape, with header values
//! hidden unless `--show-header-values`, so a file can be fetched, edited and applied.
use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::json;

use credvault::proto::v1 as pb;

use super::client::{self, print_json, status, time};
use crate::ClientArgs;

#[derive(Subcommand)]
pub enum AuthCommand {
    /// External auth connectors to the tenant's own REST auth system.
    #[command(subcommand)]
    Connector(ConnectorCommand),
}

#[derive(Subcommand)]
pub enum ConnectorCommand {
    /// Create a connector from a JSON file (`-` reads stdin).
    Create {
        /// The connector file (JSON; see docs/external-auth.md).
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replace every setting of a connector with the file's.
    Update {
        /// The connector's id (ac_…).
        id: String,
        /// The connector file (JSON; see docs/external-auth.md).
        #[arg(long)]
        file: PathBuf,
        /// Refuse (ABORTED) unless the connector is at this version.
        #[arg(long)]
        expected_version: Option<i64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a connector, with its circuit breaker's state.
    Get {
        /// The connector's id (ac_…).
        id: String,
        /// Print header values (they may hold keys to your auth system).
        #[arg(long)]
        show_header_values: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List this tenant's connectors.
    List {
        /// Print header values (they may hold keys to your auth system).
        #[arg(long)]
        show_header_values: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a connector.
    Delete {
        /// The connector's id (ac_…).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// A connector as a file holds it: the `Connector` message's fields, enums by
/// their short names (`"JSON"`, `"BASIC"`, `"JSON_POINTER"`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectorFile {
    pub name: String,
    pub authentication: LoginFile,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forgot_password: Option<ForgotFile>,
    pub pre_validation: PreValidationFile,
    pub link_users: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<ExternalIdFile>,
    pub error_mapping: Vec<ErrorRuleFile>,
    pub page: PageFile,
    pub allow_private_network: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginFile {
    pub url: String,
    pub method: String,
    pub format: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub auth_type: String,
    pub timeout_ms: i32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForgotFile {
    pub url: String,
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreValidationFile {
    pub allowed_email_domains: Vec<String>,
    pub username_prefix: String,
    pub pattern: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExternalIdFile {
    pub source: String,
    pub path: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorRuleFile {
    pub status_min: i32,
    pub status_max: i32,
    pub match_path: String,
    pub match_value: String,
    pub error_code: String,
    pub message: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PageFile {
    pub title: String,
    pub description: String,
    pub username_label: String,
    pub terms_url: String,
    pub faq_url: String,
    pub password_reset_url: String,
}

/// An enum value by its short (`JSON`) or full (`BODY_FORMAT_JSON`) name, in any
/// case; empty is the default (0).
fn enum_value(
    field: &str,
    prefix: &str,
    name: &str,
    parse: impl Fn(&str) -> Option<i32>,
    allowed: &str,
) -> anyhow::Result<i32> {
    if name.is_empty() {
        return Ok(0);
    }
    let name_upper = name.to_ascii_uppercase();
    let full = if name_upper.starts_with(prefix) {
        name_upper
    } else {
        format!("{prefix}{name_upper}")
    };
    parse(&full).with_context(|| format!("{field}: \"{name}\" is not one of {allowed}"))
}

fn short_name(full: &str, prefix: &str) -> String {
    full.trim_start_matches(prefix).to_owned()
}

impl ConnectorFile {
    /// The message to send (`id` empty for a create).
    pub fn into_message(self, id: String) -> anyhow::Result<pb::Connector> {
        let a = self.authentication;
        let format = enum_value(
            "authentication.format",
            "BODY_FORMAT_",
            &a.format,
            |n| pb::BodyFormat::from_str_name(n).map(i32::from),
            "JSON, URL_ENCODED, XML",
        )?;
        let auth_type = enum_value(
            "authentication.auth_type",
            "CONNECTOR_AUTH_TYPE_",
            &a.auth_type,
            |n| pb::ConnectorAuthType::from_str_name(n).map(i32::from),
            "NONE, BASIC",
        )?;
        let external_id = self
            .external_id
            .map(|e| {
                let source = enum_value(
                    "external_id.source",
                    "EXTERNAL_ID_SOURCE_",
                    &e.source,
                    |n| pb::ExternalIdSource::from_str_name(n).map(i32::from),
                    "JSON_POINTER, XML_PATH, HEADER",
                )?;
                anyhow::Ok(pb::ExternalIdLocation {
                    source,
                    path: e.path,
                })
            })
            .transpose()?;
        let p = self.page;
        Ok(pb::Connector {
            id,
            name: self.name,
            authentication: Some(pb::LoginRequestTemplate {
                url: a.url,
                method: a.method,
                format,
                headers: a.headers.into_iter().collect(),
                body: a.body,
                auth_type,
                timeout_ms: a.timeout_ms,
            }),
            forgot_password: self.forgot_password.map(|f| pb::ForgotPasswordTemplate {
                url: f.url,
                headers: f.headers.into_iter().collect(),
            }),
            pre_validation: Some(pb::PreValidation {
                allowed_email_domains: self.pre_validation.allowed_email_domains,
                username_prefix: self.pre_validation.username_prefix,
                pattern: self.pre_validation.pattern,
            }),
            link_users: self.link_users,
            external_id,
            error_mapping: self
                .error_mapping
                .into_iter()
                .map(|r| pb::ErrorRule {
                    status_min: r.status_min,
                    status_max: r.status_max,
                    match_path: r.match_path,
                    match_value: r.match_value,
                    error_code: r.error_code,
                    message: r.message,
                })
                .collect(),
            page: Some(pb::SignInPage {
                title: p.title,
                description: p.description,
                username_label: p.username_label,
                terms_url: p.terms_url,
                faq_url: p.faq_url,
                password_reset_url: p.password_reset_url,
            }),
            allow_private_network: self.allow_private_network,
            ..Default::default()
        })
    }

    /// The file shape of a stored connector.
    pub fn from_message(c: &pb::Connector) -> Self {
        let a = c.authentication.clone().unwrap_or_default();
        let p = c.pre_validation.clone().unwrap_or_default();
        let page = c.page.clone().unwrap_or_default();
        let format = short_name(a.format().as_str_name(), "BODY_FORMAT_");
        let auth_type = short_name(a.auth_type().as_str_name(), "CONNECTOR_AUTH_TYPE_");
        Self {
            name: c.name.clone(),
            authentication: LoginFile {
                url: a.url,
                method: a.method,
                format,
                headers: a.headers.into_iter().collect(),
                body: a.body,
                auth_type,
                timeout_ms: a.timeout_ms,
            },
            forgot_password: c.forgot_password.clone().map(|f| ForgotFile {
                url: f.url,
                headers: f.headers.into_iter().collect(),
            }),
            pre_validation: PreValidationFile {
                allowed_email_domains: p.allowed_email_domains,
                username_prefix: p.username_prefix,
                pattern: p.pattern,
            },
            link_users: c.link_users,
            external_id: c.external_id.as_ref().map(|e| ExternalIdFile {
                source: short_name(e.source().as_str_name(), "EXTERNAL_ID_SOURCE_"),
                path: e.path.clone(),
            }),
            error_mapping: c
                .error_mapping
                .iter()
                .map(|r| ErrorRuleFile {
                    status_min: r.status_min,
                    status_max: r.status_max,
                    match_path: r.match_path.clone(),
                    match_value: r.match_value.clone(),
                    error_code: r.error_code.clone(),
                    message: r.message.clone(),
                })
                .collect(),
            page: PageFile {
                title: page.title,
                description: page.description,
                username_label: page.username_label,
                terms_url: page.terms_url,
                faq_url: page.faq_url,
                password_reset_url: page.password_reset_url,
            },
            allow_private_network: c.allow_private_network,
        }
    }

    fn hide_header_values(&mut self) {
        let headers = self.authentication.headers.values_mut().chain(
            self.forgot_password
                .iter_mut()
                .flat_map(|f| f.headers.values_mut()),
        );
        for value in headers {
            *value = "[hidden]".into();
        }
    }
}

fn read_file(path: &PathBuf) -> anyhow::Result<ConnectorFile> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the connector from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a connector file (see docs/external-auth.md)",
            path.display()
        )
    })
}

fn connector_json(c: &pb::Connector, show_header_values: bool) -> serde_json::Value {
    let mut file = ConnectorFile::from_message(c);
    if !show_header_values {
        file.hide_header_values();
    }
    let mut out = json!({ "id": c.id, "version": c.version });
    if let (Some(map), Ok(serde_json::Value::Object(fields))) =
        (out.as_object_mut(), serde_json::to_value(&file))
    {
        map.extend(fields);
    }
    let health = c.health.unwrap_or_default();
    out["health"] = json!({
        "circuit_open": health.circuit_open,
        "consecutive_failures": health.consecutive_failures,
        "open_until": time(health.open_until.as_ref()),
    });
    out["created_at"] = time(c.created_at.as_ref());
    out["updated_at"] = time(c.updated_at.as_ref());
    out
}

pub async fn run(cmd: AuthCommand) -> anyhow::Result<()> {
    let AuthCommand::Connector(cmd) = cmd;
    match cmd {
        ConnectorCommand::Create { file, client } => {
            let connector = read_file(&file)?.into_message(String::new())?;
            let mut c = client::external_auth(&client).await?;
            let request = pb::CreateConnectorRequest {
                connector: Some(connector),
            };
            let r = c.create_connector(request).await.map_err(status)?;
            print_json(&connector_json(r.get_ref(), false));
        }
        ConnectorCommand::Update {
            id,
            file,
            expected_version,
            client,
        } => {
            if id.is_empty() {
                bail!("give the connector's id (ac_…)");
            }
            let connector = read_file(&file)?.into_message(id)?;
            let mut c = client::external_auth(&client).await?;
            let request = pb::UpdateConnectorRequest {
                connector: Some(connector),
                expected_version,
            };
            let r = c.update_connector(request).await.map_err(status)?;
            print_json(&connector_json(r.get_ref(), false));
        }
        ConnectorCommand::Get {
            id,
            show_header_values,
            client,
        } => {
            let mut c = client::external_auth(&client).await?;
            let r = c
                .get_connector(pb::GetConnectorRequest { id })
                .await
                .map_err(status)?;
            print_json(&connector_json(r.get_ref(), show_header_values));
        }
        ConnectorCommand::List {
            show_header_values,
            client,
        } => {
            let mut c = client::external_auth(&client).await?;
            let r = c
                .list_connectors(pb::ListConnectorsRequest {})
                .await
                .map_err(status)?;
            let all: Vec<_> = r
                .get_ref()
                .connectors
                .iter()
                .map(|c| connector_json(c, show_header_values))
                .collect();
            print_json(&json!(all));
        }
        ConnectorCommand::Delete { id, client } => {
            let mut c = client::external_auth(&client).await?;
            c.delete_connector(pb::DeleteConnectorRequest { id: id.clone() })
                .await
                .map_err(status)?;
            print_json(&json!({ "deleted": id }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_survives_the_round_trip_through_the_message() {
        let text = r#"{
            "name": "corp",
            "authentication": {
                "url": "https://auth.example.com/login",
                "method": "POST",
                "format": "XML",
                "headers": {"X-Api-Key": "k"},
                "body": "<login><u>{{USEREMAIL}}</u></login>",
                "auth_type": "BASIC",
                "timeout_ms": 2000
            },
            "link_users": true,
            "external_id": {"source": "EXTERNAL_ID_SOURCE_XML_PATH", "path": "/user/id"},
            "error_mapping": [{"status_min": 423, "status_max": 423, "error_code": "locked", "message": "Locked."}],
            "page": {"title": "Sign in to Corp"}
        }"#;
        let file: ConnectorFile = serde_json::from_str(text).unwrap();
        let message = file.into_message("ac_1".into()).unwrap();
        assert_eq!(
            message.authentication.as_ref().unwrap().format(),
            pb::BodyFormat::Xml
        );
        let back = ConnectorFile::from_message(&message);
        assert_eq!(back.authentication.format, "XML");
        assert_eq!(back.authentication.auth_type, "BASIC");
        assert_eq!(back.external_id.unwrap().source, "XML_PATH");
        assert_eq!(back.error_mapping[0].error_code, "locked");
        assert_eq!(back.page.title, "Sign in to Corp");
    }

    #[test]
    fn unknown_fields_and_enum_names_are_refused_with_their_name() {
        let typo = serde_json::from_str::<ConnectorFile>(r#"{"nmae": "x"}"#);
        assert!(typo.unwrap_err().to_string().contains("nmae"));
        let file: ConnectorFile =
            serde_json::from_str(r#"{"authentication": {"format": "YAML"}}"#).unwrap();
        let error = file.into_message(String::new()).unwrap_err().to_string();
        assert!(
            error.contains("authentication.format") && error.contains("YAML"),
            "{error}"
        );
    }
}
