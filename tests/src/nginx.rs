//! A real nginx (Debian's package) per test, as an HTTP upstream.
//!
//! [`Nginx::start`] writes a config into its own temp dir (prefix, pid
//! file, logs, temp paths, all there) and runs `nginx -g 'daemon off;'`
//! with `master_process off` as a child process on a free loopback port;
//! dropping it kills the process and removes the dir. When nginx is not
//! installed and the test runs as root, it is installed with apt-get once
//! (as `scripts/test` does).
//!
//! What it serves ([`STATIC_FILES`] from `www/` in the temp dir):
//! - `/data.json` ([`DATA_JSON`]): JSON with keys a masking policy hides
//!   (`email`, `password`, `token`, nested and in an array);
//! - `/large.bin` ([`LARGE_LEN`] bytes, byte `i` is [`pattern_byte`]`(i)`);
//! - `/hello.txt` (`hello from nginx\n`);
//! - `/slow/<file>`: the same files sent at [`SLOW_RATE`] bytes/s
//!   (`limit_rate`), so the first bytes of `/slow/large.bin` arrive long
//!   before its end (about 32 s);
//! - `/echo` (any method, any suffix): `200 text/plain` with
//!   `"<method> <uri>\n<Authorization header>\n"`: what reached nginx;
//! - `/proxy/…` when started with [`Nginx::start_proxy`]: proxied to
//!   `http://127.0.0.1:<port>/…` (unbuffered, so streams pass through).
//!
//! Every request is in the access log ([`Nginx::access_log`]), one line
//! each: `$request_method $request_uri $status "$http_authorization"`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;

use crate::command::{DEFAULT_TIMEOUT, is_root, run_ok};
use crate::logs::{self, LogFile};
use crate::ports::{free_port, wait_for_port};

/// `/data.json`.
pub const DATA_JSON: &str = r#"{"id":42,"name":"Ada","email":"a@example.com","password":"hunter2","token":"tok-3f9a","profile":{"email":"ada@example.org","phone":"+44 20 7946 0958"},"items":[{"sku":"A1","password":"p1"},{"sku":"B2","password":"p2"}]}"#;
/// The length of `/large.bin`: 8 MiB.
pub const LARGE_LEN: usize = 8 << 20;
/// The rate of `/slow/…`, in bytes per second.
pub const SLOW_RATE: usize = 256 * 1024;
/// Files under the document root.
pub const STATIC_FILES: [&str; 3] = ["data.json", "large.bin", "hello.txt"];

/// Byte `i` of `/large.bin`.
pub fn pattern_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// The whole content of `/large.bin`.
pub fn large_content() -> Vec<u8> {
    (0..LARGE_LEN).map(pattern_byte).collect()
}

/// A running nginx; killed on drop.
pub struct Nginx {
    dir: Option<TempDir>,
    root: PathBuf,
    port: u16,
    child: Option<Child>,
    log: LogFile,
}

impl Nginx {
    /// Starts nginx serving the files above on a free port.
    pub fn start() -> Nginx {
        Nginx::start_inner(None)
    }

    /// Like [`start`](Self::start), plus `/proxy/` proxied to
    /// `127.0.0.1:upstream_port`.
    pub fn start_proxy(upstream_port: u16) -> Nginx {
        Nginx::start_inner(Some(upstream_port))
    }

    fn start_inner(proxy_to: Option<u16>) -> Nginx {
        let binary = binary();
        sweep_once();
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-nginx-")
            .tempdir()
            .unwrap_or_else(|e| panic!("nginx: cannot create a temp dir: {e}"));
        let root = dir.path().to_path_buf();
        let _ = std::fs::write(root.join(OWNER_FILE), std::process::id().to_string());
        let www = root.join("www");
        std::fs::create_dir_all(root.join("tmp")).expect("mkdir tmp");
        std::fs::create_dir_all(&www).expect("mkdir www");
        std::fs::write(www.join("data.json"), DATA_JSON).expect("write data.json");
        std::fs::write(www.join("large.bin"), large_content()).expect("write large.bin");
        std::fs::write(www.join("hello.txt"), "hello from nginx\n").expect("write hello.txt");
        let mut nginx = Nginx {
            dir: Some(dir),
            log: LogFile::new("nginx error log", root.join("error.log")),
            root,
            port: 0,
            child: None,
        };
        // Another process may take the port first: try a few.
        for attempt in 1..=5 {
            nginx.port = free_port();
            std::fs::write(nginx.root.join("nginx.conf"), nginx.config(proxy_to))
                .expect("write nginx.conf");
            let child = Command::new(&binary)
                .arg("-p")
                .arg(&nginx.root)
                .arg("-c")
                .arg(nginx.root.join("nginx.conf"))
                .arg("-e")
                .arg(nginx.log.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            nginx.child = Some(child);
            if wait_for_port(nginx.port, Duration::from_secs(10)) {
                return nginx;
            }
            nginx.kill();
            if attempt == 5 || !nginx.log.read().contains("Address already in use") {
                panic!("nginx did not start\n{}", nginx.log.excerpt());
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn config(&self, proxy_to: Option<u16>) -> String {
        let root = self.root.display();
        let proxy = proxy_to.map_or(String::new(), |port| {
            format!(
                "        location /proxy/ {{\n            proxy_pass http://127.0.0.1:{port}/;\n            \
                 proxy_buffering off;\n            proxy_http_version 1.1;\n            \
                 proxy_read_timeout 3600s;\n        }}\n"
            )
        });
        format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {root}/nginx.pid;\n\
             error_log {root}/error.log info;\nevents {{ worker_connections 256; }}\n\
             http {{\n    \
                 log_format gatehouse '$request_method $request_uri $status \"$http_authorization\"';\n    \
                 access_log {root}/access.log gatehouse;\n    \
                 client_body_temp_path {root}/tmp/body;\n    proxy_temp_path {root}/tmp/proxy;\n    \
                 fastcgi_temp_path {root}/tmp/fastcgi;\n    uwsgi_temp_path {root}/tmp/uwsgi;\n    \
                 scgi_temp_path {root}/tmp/scgi;\n    \
                 types {{ application/json json; text/plain txt; application/octet-stream bin; }}\n    \
                 default_type application/octet-stream;\n    sendfile on;\n    keepalive_timeout 65s;\n    \
                 server {{\n        listen 127.0.0.1:{port};\n        root {root}/www;\n        \
                     location /slow/ {{\n            alias {root}/www/;\n            limit_rate {rate};\n        }}\n        \
                     location /echo {{\n            default_type text/plain;\n            \
                         return 200 \"$request_method $request_uri\\n$http_authorization\\n\";\n        }}\n\
             {proxy}    }}\n}}\n",
            port = self.port,
            rate = SLOW_RATE,
        )
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The document root (the served files are there).
    pub fn www(&self) -> PathBuf {
        self.root.join("www")
    }

    /// The access log, one line per request (see the module docs).
    pub fn access_log(&self) -> Vec<String> {
        logs::read(&self.root.join("access.log"))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The temp dir (config, logs, document root).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.log.dump_if_panicking();
        self.kill();
        if let Some(dir) = self.dir.take()
            && logs::keep_dirs()
        {
            let _ = std::fs::remove_file(dir.path().join(OWNER_FILE));
            eprintln!("keeping nginx dir {}", dir.keep().display());
        }
    }
}

/// Holds the id of the test process that made an nginx dir.
const OWNER_FILE: &str = "owner.pid";

/// Once per process: stops the nginx of every `gatehouse-nginx-*` dir whose
/// test process died without dropping it (killed by a timeout), and
/// removes the dir. A pid is signalled only if its command line names the
/// dir, so a reused pid is never hit.
fn sweep_once() {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let named = entry
                .file_name()
                .to_string_lossy()
                .starts_with("gatehouse-nginx-");
            let pid = |file: &str| -> Option<u32> {
                std::fs::read_to_string(dir.join(file))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            };
            let Some(owner) = pid(OWNER_FILE).filter(|_| named) else {
                continue;
            };
            if Path::new(&format!("/proc/{owner}")).exists() {
                continue;
            }
            if let Some(nginx) = pid("nginx.pid")
                && let Ok(cmdline) = std::fs::read(format!("/proc/{nginx}/cmdline"))
                && String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy())
            {
                let _ = Command::new("kill")
                    .arg("-9")
                    .arg(nginx.to_string())
                    .status();
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    });
}

/// The nginx binary: on `PATH`, else `/usr/sbin/nginx`; installed with
/// apt-get (once per process) when missing and running as root. Panics
/// with what to do otherwise.
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(found) = find() {
                return found;
            }
            assert!(
                is_root(),
                "nginx is not installed: `apt-get install nginx` (or run scripts/test as root)"
            );
            let apt = |args: &[&str]| {
                run_ok(
                    Command::new("apt-get")
                        .env("DEBIAN_FRONTEND", "noninteractive")
                        .args(["-o", "DPkg::Lock::Timeout=300"])
                        .args(args),
                    DEFAULT_TIMEOUT * 5,
                )
            };
            apt(&["update", "-qq"]);
            apt(&["install", "-y", "-qq", "--no-install-recommends", "nginx"]);
            find().expect("nginx is installed but not found")
        })
        .clone()
}

fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}
