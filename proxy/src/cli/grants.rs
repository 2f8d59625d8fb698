//! `gatehouse grants revoke JTI`: ends a grant through the admin API.

use anyhow::Context as _;
use hyper::Method;

use super::approvals::{AdminArgs, Api, percent_encode, token};
use crate::admin::client;

#[derive(Debug, clap::Args)]
pub struct GrantsArgs {
    #[command(flatten)]
    api: AdminArgs,
    #[command(subcommand)]
    command: GrantsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum GrantsCommand {
    /// Revoke a grant: its open sessions end now, new ones are refused,
    /// also after a restart (the revocation is recorded in the store).
    Revoke {
        /// The grant's `jti`.
        jti: String,
        /// Why (told to the agent and recorded).
        #[arg(long)]
        reason: String,
    },
}

/// Runs `gatehouse grants …`.
pub fn run(args: &GrantsArgs) -> anyhow::Result<()> {
    let token = token(args.api.token_file.as_deref())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the client runtime")?;
    rt.block_on(async {
        let api = Api {
            base: &args.api.admin,
            token: &token,
        };
        match &args.command {
            GrantsCommand::Revoke { jti, reason } => {
                if reason.trim().is_empty() {
                    anyhow::bail!("--reason must say why; it is recorded and told to the agent");
                }
                let path = format!("/grants/{}/revoke", percent_encode(jti));
                let body = serde_json::json!({ "reason": reason }).to_string();
                let response = api.call(Method::POST, &path, Some(body.into())).await?;
                let body = client::read_body(response.into_body(), 1 << 20).await?;
                let answer: serde_json::Value =
                    serde_json::from_slice(&body).context("the admin API's answer is not JSON")?;
                if answer["revoked"] == true {
                    println!("revoked {jti}: open sessions end, new ones are refused");
                } else {
                    println!("{jti} was already revoked");
                }
                Ok(())
            }
        }
    })
}
