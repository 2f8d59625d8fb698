//! `[targets.NAME]`: where each target is, and its password, read from
//! the environment or a file.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::file::TargetSection;
use super::validate::{Env, Findings, path};
use super::{HttpKind, Secret, Target};

/// `targets.NAME`, quoting NAME when TOML would need it.
fn target_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        format!("targets.{name}")
    } else {
        format!("targets.{name:?}")
    }
}

pub(super) fn target(
    f: &mut Findings,
    name: &str,
    mut s: TargetSection,
    base: &Path,
    env: &Env<'_>,
) -> Target {
    let at = target_key(name);
    let kind = match s.kind.as_str() {
        "postgres" => None,
        "http" => Some(HttpKind::Http),
        "kubernetes" => Some(HttpKind::Kubernetes),
        other => {
            f.problem(
                &format!("{at}.kind"),
                format!("{other:?} is not a kind; use \"postgres\", \"http\" or \"kubernetes\""),
            );
            None
        }
    };
    if let Some(kind) = kind {
        let http = super::http::target(f, &at, name, kind, &mut s, base, env);
        let masking = s
            .masking
            .and_then(|m| super::masking::masking(f, &format!("{at}.masking"), m, base, env));
        return Target {
            name: name.to_owned(),
            host: http.as_ref().map(|h| h.host.clone()).unwrap_or_default(),
            port: http.as_ref().map_or(0, |h| h.port),
            database: String::new(),
            user: String::new(),
            password: None,
            connect_timeout: http
                .as_ref()
                .map_or(Duration::from_secs(5), |h| h.connect_timeout),
            pool_size: 0,
            masking,
            http,
        };
    }
    for (key, set) in [
        ("url", s.url.is_some()),
        ("ca_file", s.ca_file.is_some()),
        ("path_prefix", s.path_prefix.is_some()),
        ("hosts", !s.hosts.is_empty()),
        ("credential", s.credential.is_some()),
        ("impersonate", s.impersonate),
        ("response_timeout", s.response_timeout != "60s"),
        ("allow_spdy", s.allow_spdy),
    ] {
        if set {
            f.problem(
                &format!("{at}.{key}"),
                "is for kind = \"http\" or \"kubernetes\" targets",
            );
        }
    }
    if name.is_empty() || name.chars().any(char::is_control) {
        f.problem(
            &at,
            "a target name must be non-empty, without control characters",
        );
    }
    let host = f.required(
        &format!("{at}.host"),
        s.host,
        "give the PostgreSQL server's host name or address",
    );
    if s.port == 0 {
        f.problem(&format!("{at}.port"), "must not be 0");
    }
    let database = f.required(
        &format!("{at}.database"),
        Some(s.database.unwrap_or_else(|| name.to_owned())),
        "give the upstream database name, or leave it out to use the target's name",
    );
    let user = f.required(
        &format!("{at}.user"),
        s.user,
        "give the role the gateway logs in as",
    );
    if s.password.is_some() {
        f.problem(
            &format!("{at}.password"),
            "passwords must not be written in the config file; put the password in an \
             environment variable and set password_env = \"VARIABLE\", or in a file and set \
             password_file = \"path\"",
        );
    }
    let password = match (s.password_env, s.password_file) {
        (Some(_), Some(_)) => {
            f.problem(&at, "set password_env or password_file, not both");
            None
        }
        (Some(var), None) => password_from_env(f, &format!("{at}.password_env"), &var, env),
        (None, Some(file)) => {
            let key = format!("{at}.password_file");
            let file = f.required(&key, Some(file), "give the password file's path");
            if file.is_empty() {
                None
            } else {
                password_from_file(f, &key, &path(base, &file))
            }
        }
        (None, None) => None,
    };
    let connect_timeout = f.duration(
        &format!("{at}.connect_timeout"),
        &s.connect_timeout,
        Duration::from_millis(1),
        Duration::from_secs(600),
    );
    let masking = s
        .masking
        .and_then(|m| super::masking::masking(f, &format!("{at}.masking"), m, base, env));
    Target {
        name: name.to_owned(),
        host,
        port: s.port,
        database,
        user,
        password,
        connect_timeout,
        pool_size: usize::try_from(s.pool_size.min(10_000)).unwrap_or(0),
        masking,
        http: None,
    }
}

pub(super) fn password_from_env(
    f: &mut Findings,
    key: &str,
    var: &str,
    env: &Env<'_>,
) -> Option<Secret> {
    if var.is_empty() || var.contains(['=', '\0']) {
        f.problem(key, format!("{var:?} is not an environment variable name"));
        return None;
    }
    match env(var).map(OsString::into_string) {
        None => f.problem(key, format!("environment variable {var} is not set")),
        Some(Err(_)) => f.problem(
            key,
            format!("environment variable {var} is not valid UTF-8"),
        ),
        Some(Ok(value)) if value.is_empty() => {
            f.problem(key, format!("environment variable {var} is set but empty"));
        }
        Some(Ok(value)) => return Some(Secret::new(value)),
    }
    None
}

pub(super) fn password_from_file(f: &mut Findings, key: &str, path: &Path) -> Option<Secret> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            f.problem(key, format!("cannot read {}: {e}", path.display()));
            return None;
        }
    };
    let Ok(text) = String::from_utf8(bytes) else {
        f.problem(key, format!("{} is not valid UTF-8", path.display()));
        return None;
    };
    let password = text.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        f.problem(key, format!("{} is empty", path.display()));
        return None;
    }
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            f.warning(
                key,
                format!(
                    "{} can be read by other users (mode {mode:03o}); chmod 600 it",
                    path.display()
                ),
            );
        }
    }
    Some(Secret::new(password))
}
