//! The initialised data directory every test cluster is copied from.
//!
//! `initdb` plus the roles, database and table below take about two
//! seconds; a `cp -a` of the result (35 MB) well under a second. The
//! template is built once per machine into [`base_dir`], under a name that hashes everything
//! that shapes it (server version, uid, the SQL and `pg_hba.conf` here), and
//! published with an atomic `rename`, so concurrent test processes either
//! find a complete template or build their own and lose the race harmlessly.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::command::{DEFAULT_TIMEOUT, chown_to_postgres, postgres_command, run, run_ok, uid};
use crate::logs;
use crate::postgres::{APP_PASSWORD, CLEAR_PASSWORD, DATABASE, MD5_PASSWORD};

/// Bump when the template's shape changes in a way the hash cannot see.
const TEMPLATE_VERSION: u32 = 1;

/// Who may log in, and how. Superuser `postgres` is trusted on the socket and
/// on loopback (for the tests' own setup and checks); each other role
/// exercises one upstream authentication method.
pub(crate) const PG_HBA: &str = "\
# TYPE  DATABASE  USER       ADDRESS        METHOD
local   all       postgres                  trust
host    all       postgres   127.0.0.1/32   trust
host    all       app        127.0.0.1/32   scram-sha-256
host    all       md5user    127.0.0.1/32   md5
host    all       clearuser  127.0.0.1/32   password
host    all       trustuser  127.0.0.1/32   trust
";

/// Seed rows of `invoices`, in id order: `(id, customer, total)`.
pub const INVOICES: [(i32, &str, &str); 3] = [
    (1, "acme", "120.50"),
    (2, "globex", "99.00"),
    (3, "initech", "4500.00"),
];

fn setup_sql() -> String {
    let rows: Vec<String> = INVOICES
        .iter()
        .map(|(id, customer, total)| format!("({id}, '{customer}', {total})"))
        .collect();
    format!(
        "\
SET password_encryption = 'scram-sha-256';
CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}';
CREATE ROLE clearuser LOGIN PASSWORD '{CLEAR_PASSWORD}';
CREATE ROLE trustuser LOGIN;
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD '{MD5_PASSWORD}';
CREATE DATABASE {DATABASE} OWNER app;
\\connect {DATABASE}
SET ROLE app;
CREATE TABLE invoices (id int PRIMARY KEY, customer text, total numeric);
INSERT INTO invoices VALUES {rows};
GRANT ALL ON invoices TO md5user, clearuser, trustuser;
GRANT ALL ON SCHEMA public TO md5user, clearuser, trustuser;
",
        rows = rows.join(", ")
    )
}

/// Where clusters and the template live: `$GATEHOUSE_TEST_PG_DIR`, else
/// `/dev/shm` when it is a writable directory, else the system temp dir.
///
/// tmpfs because copying the template onto a busy disk was measured at up
/// to a second, against a few tens of milliseconds in memory; the server
/// runs with `fsync=off` anyway, so nothing a test checks depends on the
/// disk under it. (The gateway's store stays on the real temp dir.)
pub(crate) fn base_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("GATEHOUSE_TEST_PG_DIR") {
            return PathBuf::from(dir);
        }
        let shm = Path::new("/dev/shm");
        let writable = shm.is_dir()
            && tempfile::Builder::new()
                .prefix("gatehouse-probe-")
                .tempfile_in(shm)
                .is_ok();
        if writable {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    })
    .clone()
}

/// The template data directory, built on first use.
pub(crate) fn template_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dest = base_dir().join(format!(
            "gatehouse-pg-template-u{}-{:016x}",
            uid(),
            template_key()
        ));
        if !dest.join("PG_VERSION").exists() {
            build(&dest);
        }
        dest
    })
}

fn template_key() -> u64 {
    let version = run_ok(
        Command::new("postgres").arg("--version"),
        Duration::from_secs(10),
    );
    let mut h = DefaultHasher::new();
    TEMPLATE_VERSION.hash(&mut h);
    version.stdout.hash(&mut h);
    PG_HBA.hash(&mut h);
    setup_sql().hash(&mut h);
    h.finish()
}

fn build(dest: &Path) {
    let staging = tempfile::Builder::new()
        .prefix("gatehouse-pg-template-build-")
        .tempdir_in(base_dir())
        .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
    let root = staging.path();
    let data = root.join("data");
    let log = root.join("template.log");
    let sql = root.join("setup.sql");
    crate::janitor::claim(root);
    chown_to_postgres(root);

    run_ok(
        postgres_command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync", "--no-instructions"])
            // 1 MiB WAL segments instead of 16: smaller copies.
            .arg("--wal-segsize=1"),
        Duration::from_secs(120),
    );
    std::fs::write(data.join("pg_hba.conf"), PG_HBA)
        .unwrap_or_else(|e| panic!("cannot write pg_hba.conf: {e}"));
    std::fs::write(&sql, setup_sql()).unwrap_or_else(|e| panic!("cannot write setup.sql: {e}"));
    chown_to_postgres(root);

    let opts = format!(
        "-c listen_addresses='' -c port=5432 -c unix_socket_directories='{}' -c fsync=off",
        root.display()
    );
    let started = run(
        postgres_command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &opts, "start"]),
        DEFAULT_TIMEOUT,
    );
    if !started.status.success() {
        panic!(
            "cannot start the template cluster\n{}\n{}",
            crate::command::render(&started),
            logs::excerpt("template postgres log", &log)
        );
    }
    let setup = run(
        Command::new("psql")
            .arg("-h")
            .arg(root)
            .args(["-p", "5432", "-U", "postgres", "-d", "postgres"])
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&sql),
        DEFAULT_TIMEOUT,
    );
    let stopped = run(
        postgres_command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-w", "-t", "60", "-m", "fast", "stop"]),
        DEFAULT_TIMEOUT,
    );
    if !setup.status.success() || !stopped.status.success() {
        panic!(
            "cannot set up the template cluster\nsetup: {}\nstop: {}\n{}",
            crate::command::render(&setup),
            crate::command::render(&stopped),
            logs::excerpt("template postgres log", &log)
        );
    }
    let _ = std::fs::remove_file(data.join("postmaster.opts"));
    // Atomic publish. Losing to a concurrent builder leaves `dest` complete.
    if let Err(e) = std::fs::rename(&data, dest)
        && !dest.join("PG_VERSION").exists()
    {
        panic!("cannot move the template to {}: {e}", dest.display());
    }
}
