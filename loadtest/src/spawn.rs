//! `--spawn-gateway CONFIG`: the harness starts `gatehouse serve`, waits
//! for its port, and after the run stops it with SIGTERM (a graceful
//! shutdown that drains sessions and closes the store) so that the store
//! can be checked.
//!
//! The few settings the harness needs are read from the config itself:
//! `[listener] address`, `[store] dir` (relative paths are relative to the
//! config's directory, as the gateway resolves them), whether `[tls]` is
//! there, and `[grants] issuer`/`audience`. The gateway inherits the
//! harness's environment, so target passwords are passed the usual way
//! (`GATEHOUSE_<TARGET>_PASSWORD` or what the config names).

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::time::{Instant, sleep};

/// How long the gateway may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a graceful stop may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// What the harness reads from a gateway config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Where to connect: the listener, with an unspecified address
    /// (`0.0.0.0`, `::`) replaced by loopback.
    pub address: SocketAddr,
    /// The store directory.
    pub store_dir: PathBuf,
    /// Whether the listener speaks TLS.
    pub tls: bool,
    /// `[grants] issuer`.
    pub issuer: String,
    /// `[grants] audience`.
    pub audience: String,
}

impl GatewayConfig {
    /// Reads `path`.
    pub fn read(path: &Path) -> anyhow::Result<GatewayConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--spawn-gateway: cannot read {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base)
            .with_context(|| format!("--spawn-gateway: config {}", path.display()))
    }

    fn parse(text: &str, base: &Path) -> anyhow::Result<GatewayConfig> {
        let table: toml::Table = toml::from_str(text).context("not valid TOML")?;
        let get = |section: &str, key: &str| -> Option<String> {
            table.get(section)?.get(key)?.as_str().map(str::to_owned)
        };
        let address = get("listener", "address").unwrap_or_else(|| "127.0.0.1:15432".into());
        let mut address: SocketAddr = address
            .parse()
            .with_context(|| format!("[listener] address {address:?} is not IP:PORT"))?;
        if address.ip().is_unspecified() {
            address.set_ip(match address.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let store_dir = base.join(get("store", "dir").unwrap_or_else(|| "data/store".into()));
        Ok(GatewayConfig {
            address,
            store_dir,
            tls: table.contains_key("tls"),
            issuer: get("grants", "issuer").unwrap_or_else(|| "gatehouse".into()),
            audience: get("grants", "audience").unwrap_or_else(|| "gatehouse".into()),
        })
    }
}

/// A gateway the harness started.
pub struct Spawned {
    child: Option<Child>,
    /// Where its output goes.
    pub log: PathBuf,
}

impl Spawned {
    /// The `gatehouse` binary: `explicit`, else `gatehouse` next to this
    /// executable, else `gatehouse` on PATH.
    pub fn binary(explicit: Option<&Path>) -> PathBuf {
        if let Some(path) = explicit {
            return path.to_owned();
        }
        std::env::current_exe()
            .ok()
            .map(|exe| exe.with_file_name("gatehouse"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("gatehouse"))
    }

    /// Starts `binary serve --config config`, output to `log`, and waits
    /// until `address` accepts TCP. Fails, with the log's tail, if the
    /// gateway exits or does not listen within 20 s.
    pub async fn start(
        binary: &Path,
        config: &Path,
        address: SocketAddr,
        log: PathBuf,
    ) -> anyhow::Result<Spawned> {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            bail!(
                "--spawn-gateway: something already listens on {address} (a gateway still \
                 running?); stop it first"
            );
        }
        let out = File::create(&log)
            .with_context(|| format!("cannot create the gateway log {}", log.display()))?;
        let err = out.try_clone().context("cannot share the gateway log")?;
        let child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {} (give --gatehouse-bin)", binary.display()))?;
        let mut spawned = Spawned {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = spawned.exited() {
                bail!(
                    "the gateway exited ({status}) before accepting connections\n{}",
                    spawned.log_tail()
                );
            }
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                return Ok(spawned);
            }
            if Instant::now() >= deadline {
                spawned.kill();
                bail!(
                    "the gateway did not accept connections on {address} within {}s\n{}",
                    READY_TIMEOUT.as_secs(),
                    spawned.log_tail()
                );
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGTERM, then waits for the exit; SIGKILL and an error after 30 s.
    pub async fn stop(mut self) -> anyhow::Result<ExitStatus> {
        let Some(pid) = self.pid() else {
            bail!("the gateway is not running");
        };
        if let Some(status) = self.exited() {
            bail!(
                "the gateway exited ({status}) during the run\n{}",
                self.log_tail()
            );
        }
        let term = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .context("cannot run kill -TERM")?;
        if !term.success() {
            bail!("kill -TERM {pid} failed ({term})");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.exited() {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!(
                    "the gateway did not exit within {}s of SIGTERM (killed)\n{}",
                    STOP_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("--- last lines of {} ---\n{tail}", self.log.display())
    }
}

impl Drop for Spawned {
    /// A gateway the harness started never outlives it.
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_harness_needs() {
        let text = r#"
            [listener]
            address = "0.0.0.0:16000"
            [tls]
            cert = "c"
            key = "k"
            [store]
            dir = "data/s"
            [grants]
            audience = "gw-1"
        "#;
        let c = GatewayConfig::parse(text, Path::new("/etc/gh")).expect("parses");
        assert_eq!(
            c.address,
            "127.0.0.1:16000".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(c.store_dir, Path::new("/etc/gh/data/s"));
        assert!(c.tls);
        assert_eq!(
            (c.issuer.as_str(), c.audience.as_str()),
            ("gatehouse", "gw-1")
        );

        let abs =
            GatewayConfig::parse("[store]\ndir = \"/var/s\"\n", Path::new("/etc")).expect("parses");
        assert_eq!(abs.store_dir, Path::new("/var/s"));
        assert_eq!(
            abs.address,
            "127.0.0.1:15432".parse::<SocketAddr>().expect("addr")
        );
        assert!(!abs.tls);
        assert!(GatewayConfig::parse("[listener]\naddress = \"nope\"\n", Path::new("/")).is_err());
    }
}
