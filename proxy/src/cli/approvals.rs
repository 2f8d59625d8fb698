//! `gatehouse approvals list|approve|deny|watch`: the admin API's client.
//!
//! It talks to a running gateway's admin API (`[admin] listen`), with a
//! token from `[[admin.tokens]]`: `--token-file FILE`, or the token itself
//! in `GATEHOUSE_ADMIN_TOKEN`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::{Method, StatusCode};

use crate::admin::client::{self, ClientError};
use crate::approvals::{ApprovalEvent, Decision, PendingApproval};

/// Bounds connecting and waiting for an answer's head.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read (a list of 10,000 statements fits).
const MAX_ANSWER: usize = 256 << 20;
/// Statements longer than this are cut in `list`'s table.
const STATEMENT_WIDTH: usize = 60;

/// Where the admin API is and how to authenticate to it; shared by the
/// subcommands that talk to a running gateway.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// The gateway's admin API.
    #[arg(
        long,
        value_name = "URL",
        env = "GATEHOUSE_ADMIN_URL",
        default_value = "http://127.0.0.1:15480",
        global = true
    )]
    pub(super) admin: String,
    /// A file holding an admin token (one of [[admin.tokens]]); otherwise
    /// the token is read from GATEHOUSE_ADMIN_TOKEN.
    #[arg(long, value_name = "FILE", global = true)]
    pub(super) token_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ApprovalsArgs {
    #[command(flatten)]
    api: AdminArgs,
    #[command(subcommand)]
    command: ApprovalsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ApprovalsCommand {
    /// List the statements waiting for approval, oldest first.
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve a held statement: it runs.
    Approve {
        /// The approval's id (from `list`).
        id: String,
        /// Why (recorded with the decision).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deny a held statement: the agent gets an error with the reason.
    Deny {
        /// The approval's id (from `list`).
        id: String,
        /// Why (shown to the agent and recorded).
        #[arg(long)]
        reason: String,
    },
    /// Print each new request and decision as it happens, until interrupted.
    Watch {
        /// Print the events as JSON lines.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `gatehouse approvals …`.
pub fn run(args: &ApprovalsArgs) -> anyhow::Result<()> {
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
            ApprovalsCommand::List { json } => list(&api, *json).await,
            ApprovalsCommand::Approve { id, reason } => {
                decide(&api, id, true, reason.as_deref()).await
            }
            ApprovalsCommand::Deny { id, reason } => decide(&api, id, false, Some(reason)).await,
            ApprovalsCommand::Watch { json } => watch(&api, *json).await,
        }
    })
}

/// The admin token: from `token_file`, or `GATEHOUSE_ADMIN_TOKEN`.
pub(super) fn token(token_file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let token = match token_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("--token-file: cannot read {}", path.display()))?,
        None => match std::env::var("GATEHOUSE_ADMIN_TOKEN") {
            Ok(t) => t,
            Err(_) => bail!(
                "no admin token: give --token-file FILE, or set GATEHOUSE_ADMIN_TOKEN, with a \
                 token from the gateway's [[admin.tokens]]"
            ),
        },
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!("the admin token is empty");
    }
    Ok(token)
}

/// The admin API at `base`, with `token`.
pub(super) struct Api<'a> {
    pub(super) base: &'a str,
    pub(super) token: &'a str,
}

impl Api<'_> {
    /// Sends a request; on success the response (2xx), otherwise an error
    /// that says what went wrong and what to do.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let uri = client::join(self.base, path)?;
        let response = client::send(&uri, method, Some(self.token), body, TIMEOUT)
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = client::read_body(response.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
        match status {
            StatusCode::UNAUTHORIZED => bail!(
                "the admin API at {} refused the token: {message} (check --token-file or \
                 GATEHOUSE_ADMIN_TOKEN against the gateway's [[admin.tokens]])",
                self.base
            ),
            _ => bail!("{message} ({status})"),
        }
    }

    fn unreachable(&self, e: ClientError) -> anyhow::Error {
        match e {
            ClientError::Connect { source, .. } => anyhow::anyhow!(
                "the admin API is not reachable at {} ({source}); is the gateway running with an \
                 [admin] section in its config (listen = \"127.0.0.1:15480\" and \
                 [[admin.tokens]])? Point --admin or GATEHOUSE_ADMIN_URL at its address",
                self.base
            ),
            other => anyhow::anyhow!("the admin API at {}: {other}", self.base),
        }
    }
}

async fn list(api: &Api<'_>, as_json: bool) -> anyhow::Result<()> {
    let response = api.call(Method::GET, "/approvals", None).await?;
    let body = client::read_body(response.into_body(), MAX_ANSWER).await?;
    let pending: Vec<PendingApproval> =
        serde_json::from_slice(&body).context("the admin API's answer is not a list")?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&pending)?);
    } else if pending.is_empty() {
        println!("no approvals pending");
    } else {
        print!("{}", table(&pending, now_us()));
    }
    Ok(())
}

async fn decide(
    api: &Api<'_>,
    id: &str,
    approve: bool,
    reason: Option<&str>,
) -> anyhow::Result<()> {
    let verb = if approve { "approve" } else { "deny" };
    let path = format!("/approvals/{}/{verb}", percent_encode(id));
    let body = serde_json::json!({ "reason": reason }).to_string();
    let response = api.call(Method::POST, &path, Some(body.into())).await?;
    let body = client::read_body(response.into_body(), MAX_ANSWER).await?;
    #[derive(serde::Deserialize)]
    struct Decided {
        approval: PendingApproval,
        decision: Decision,
    }
    let decided: Decided =
        serde_json::from_slice(&body).context("the admin API's answer is not a decision")?;
    println!(
        "{} {} ({} on {}): {}",
        if decided.decision.approved {
            "approved"
        } else {
            "denied"
        },
        decided.approval.id,
        decided.approval.subject,
        decided.approval.target,
        one_line(&decided.approval.statement, STATEMENT_WIDTH),
    );
    Ok(())
}

async fn watch(api: &Api<'_>, as_json: bool) -> anyhow::Result<()> {
    use std::io::Write as _;

    let response = api.call(Method::GET, "/approvals/watch", None).await?;
    eprintln!("watching {} (Ctrl-C to stop)", api.base);
    let mut body = response.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let mut stdout = std::io::stdout();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("the admin API connection failed")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim();
            if line.is_empty() {
                continue; // heartbeat
            }
            if as_json {
                writeln!(stdout, "{line}")?;
            } else {
                writeln!(stdout, "{}", event_line(line))?;
            }
            stdout.flush()?;
        }
        if buf.len() > MAX_ANSWER {
            bail!("the admin API sent a line longer than {MAX_ANSWER} bytes");
        }
    }
    bail!("the admin API closed the stream (the gateway stopped?)")
}

/// One human-readable line for a `watch` event (a JSON line).
fn event_line(line: &str) -> String {
    match serde_json::from_str::<ApprovalEvent>(line) {
        Ok(ApprovalEvent::Requested { approval: a }) => format!(
            "requested  {}  {} on {}  needs {}: {}",
            a.id,
            a.subject,
            a.target,
            a.needs.join(", "),
            one_line(&a.statement, 120)
        ),
        Ok(ApprovalEvent::Decided {
            approval: a,
            decision: d,
        }) => {
            let verb = if d.approved { "approved " } else { "denied   " };
            let reason = if d.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", d.reason)
            };
            format!("{verb}  {}  by {}{reason}", a.id, d.approver)
        }
        Ok(ApprovalEvent::Withdrawn { id }) => {
            format!("withdrawn  {id}  (the session ended or stopped waiting)")
        }
        Err(_) => line.to_owned(),
    }
}

/// The aligned table `list` prints.
fn table(pending: &[PendingApproval], now_us: i64) -> String {
    let header = ["ID", "AGE", "SUBJECT", "TARGET", "NEEDS", "STATEMENT"].map(str::to_owned);
    let rows: Vec<[String; 6]> = pending
        .iter()
        .map(|p| {
            [
                p.id.clone(),
                age(now_us.saturating_sub(p.requested_at_us)),
                p.subject.clone(),
                p.target.clone(),
                p.needs.join(", "),
                one_line(&p.statement, STATEMENT_WIDTH),
            ]
        })
        .collect();
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = w - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `text` on one line (whitespace runs become one space), cut to `width`
/// characters with `…`.
fn one_line(text: &str, width: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= width {
        return flat;
    }
    let mut cut: String = flat.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A duration in µs as `42s`, `7m`, `3h`, `2d`.
fn age(us: i64) -> String {
    let s = us.max(0) / 1_000_000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Escapes everything but unreserved characters, for a path segment.
pub(super) fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(id: &str, statement: &str, at_us: i64) -> PendingApproval {
        PendingApproval {
            id: id.to_owned(),
            session: "s".to_owned(),
            jti: "j".to_owned(),
            subject: "agent-7".to_owned(),
            target: "orders".to_owned(),
            purpose: "p".to_owned(),
            ticket: None,
            statement: statement.to_owned(),
            needs: vec!["delete on public.invoices".to_owned()],
            requested_at_us: at_us,
        }
    }

    #[test]
    fn table_is_aligned_and_cuts_statements() {
        let now = 10_000_000_000;
        let long = format!("delete from invoices\n  where id in ({})", "1, ".repeat(40));
        let rows = [
            pending("a-1", "delete from invoices where id = 1", now - 5_000_000),
            pending("abc-22", &long, now - 600_000_000),
        ];
        let out = table(&rows, now);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID      AGE  SUBJECT  "), "{out}");
        assert!(
            lines[1].starts_with("a-1     5s   agent-7  orders  "),
            "{out}"
        );
        assert!(lines[2].starts_with("abc-22  10m  agent-7  "), "{out}");
        let statement_col = lines[0].find("STATEMENT").unwrap();
        assert_eq!(lines[1].find("delete from"), Some(statement_col));
        assert!(lines[2].ends_with('…'), "{out}");
        assert!(!lines[2].contains('\n'));
    }

    #[test]
    fn ages_and_escapes() {
        assert_eq!(age(59_000_000), "59s");
        assert_eq!(age(61_000_000), "1m");
        assert_eq!(age(7_300_000_000), "2h");
        assert_eq!(age(-5), "0s");
        assert_eq!(percent_encode("a-1_b.c"), "a-1_b.c");
        assert_eq!(percent_encode("a/b c"), "a%2Fb%20c");
        assert_eq!(crate::admin::percent_decode("a%2Fb%20c"), "a/b c");
    }

    #[test]
    fn event_lines() {
        let event = ApprovalEvent::Decided {
            approval: pending("a-1", "delete from t", 0),
            decision: Decision {
                approved: false,
                approver: "alice".to_owned(),
                reason: "not today".to_owned(),
            },
        };
        let line = serde_json::to_string(&event).unwrap();
        assert_eq!(event_line(&line), "denied     a-1  by alice: not today");
        assert_eq!(
            event_line("{\"event\":\"lagged\"}"),
            "{\"event\":\"lagged\"}"
        );
    }
}
