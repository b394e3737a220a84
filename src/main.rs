//! The `credvault` command: run the server, administer tenants and tokens, and use
//! credentials from the shell.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

/// mimalloc instead of the system allocator: a request's rows and buffers are often
/// allocated on one thread and freed on another (docs/benchmarks.md, "Issue 13").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "credvault",
    version,
    about = "Encrypted credential vault served over gRPC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded SQLite default when nothing is configured).
    Serve(commands::serve::ServeArgs),
    /// Manage tenants (admin scope).
    #[command(subcommand)]
    Tenant(commands::admin::TenantCommand),
    /// Manage service tokens (admin scope).
    #[command(subcommand)]
    Token(commands::admin::TokenCommand),
    /// Store, list, reveal, update, delete, connect and refresh credentials.
    #[command(subcommand)]
    Cred(commands::cred::CredCommand),
    /// Call a provider's API with a stored credential, without seeing it
    /// (credentials:proxy scope), e.g. `credvault proxy cred_… GET /v1/customers --query limit=3`.
    Proxy(commands::proxy::ProxyArgs),
    /// Manage this tenant's OAuth providers.
    #[command(subcommand)]
    Provider(commands::provider::ProviderCommand),
    /// Hosted connect links: mint, list, show, revoke.
    #[command(subcommand)]
    Connect(commands::connect::ConnectCommand),
    /// Webhook endpoints, events, deliveries and replay.
    #[command(subcommand)]
    Webhook(commands::webhook::WebhookCommand),
    /// End users: register, show, list, update, delete (with their credentials).
    #[command(subcommand)]
    User(commands::user::UserCommand),
    /// External auth: connectors to your own REST auth system.
    #[command(subcommand)]
    Auth(commands::auth::AuthCommand),
    /// Master key versions: status, activate, rewrap, retire (admin scope).
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// An online, consistent copy of the SQLite database (PostgreSQL: `pg_dump`).
    Backup(commands::operator::BackupArgs),
    /// The audit log: list, verify, export (audit:read or admin scope).
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
    /// Offline operator commands on the database itself (bootstrap, recover).
    #[command(subcommand)]
    Admin(commands::operator::AdminCommand),
    /// Probe a server's gRPC health (exit 0 when serving, 1 otherwise): for
    /// container and systemd health checks. Needs no token.
    Health(commands::health::HealthArgs),
}

/// Where client commands connect, and with which token.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// gRPC address of the server.
    #[arg(
        long,
        env = "CREDVAULT_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    server: String,
    /// CA certificate(s), PEM, that the server's certificate must chain to (an
    /// https:// server; default: the system's trusted roots).
    #[arg(long, env = "CREDVAULT_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
    /// Client certificate, PEM, for a server that requires mTLS (with `--key`).
    #[arg(
        long,
        env = "CREDVAULT_CLIENT_CERT_FILE",
        global = true,
        requires = "key"
    )]
    cert: Option<PathBuf>,
    /// The client certificate's private key, PEM.
    #[arg(
        long,
        env = "CREDVAULT_CLIENT_KEY_FILE",
        global = true,
        requires = "cert"
    )]
    key: Option<PathBuf>,
}

/// The config file option shared by commands that read configuration.
#[derive(clap::Args, Debug, Clone)]
pub struct ConfigArgs {
    /// TOML configuration file; `CREDVAULT_*` variables override it.
    #[arg(long, env = "CREDVAULT_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => commands::serve::run(args).await,
            Command::Tenant(cmd) => commands::admin::tenant(cmd).await,
            Command::Token(cmd) => commands::admin::token(cmd).await,
            Command::Cred(cmd) => commands::cred::run(cmd).await,
            Command::Provider(cmd) => commands::provider::run(cmd).await,
            Command::Proxy(args) => commands::proxy::run(args).await,
            Command::Connect(cmd) => commands::connect::run(cmd).await,
            Command::Webhook(cmd) => commands::webhook::run(cmd).await,
            Command::User(cmd) => commands::user::run(cmd).await,
            Command::Auth(cmd) => commands::auth::run(cmd).await,
            Command::Keys(cmd) => commands::keys::run(cmd).await,
            Command::Audit(cmd) => commands::audit::run(cmd).await,
            Command::Backup(args) => commands::operator::backup(args).await,
            Command::Admin(cmd) => commands::operator::run(cmd).await,
            Command::Health(args) => commands::health::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each said once: many error types already
/// repeat their source in their own message.
fn report(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every option and argument of every command says what it is for.
    #[test]
    fn every_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "", &mut missing);
        assert!(
            missing.is_empty(),
            "without help text:\n{}",
            missing.join("\n")
        );
    }
}
