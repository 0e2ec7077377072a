//! Configuration: the defaults, and reading them from the environment.
//!
//! `PORT` (3000), `HOST` (127.0.0.1), `TICK_MS` (1000), `HEARTBEAT_MS` (15000), `RETRY_MS` (3000),
//! `MAX_CLIENTS` (10000), `MAX_IN_FLIGHT` (1000), `ALLOWED_HOSTS` (none), `PUBLIC_DIR` (this
//! crate's `public/`) and `REDIS_URL` (none: the event log is this process's own). Tests build a
//! [`Config`] directly, with short periods, so they never wait through real seconds.

use std::env::VarError;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Config {
    /// Where `main` binds. The server itself takes an already bound listener.
    pub addr: SocketAddr,
    /// How often the ticker sends the server time.
    pub tick: Duration,
    /// A comment goes out after this long with nothing sent (the spec suggests about 15 s).
    pub heartbeat: Duration,
    /// The most `/events` streams open at once; one more gets `503`.
    pub max_clients: usize,
    /// The most connections being read or answered at once, each on a thread of its own; one more
    /// gets `503` from the accept loop, before any thread is started for it. An open stream holds
    /// no thread and does not count.
    pub max_in_flight: usize,
    /// Host names this server answers to besides `localhost` and IP addresses: the name a proxy
    /// or a DNS record puts in front of it. See `http::host_allowed`.
    pub allowed_hosts: Vec<String>,
    /// Sent as `retry:` at the start of every stream: the browser's reconnection delay.
    pub retry: Duration,
    /// A request head must be complete this soon after the connection opens.
    pub head_timeout: Duration,
    /// How long a stream client may leave bytes waiting and take none of them; then it is
    /// dropped. No thread waits for it meanwhile: see `broadcast`.
    pub write_timeout: Duration,
    /// How many writer threads send to the stream clients, each to its own share of them: one per
    /// core by default.
    pub writers: usize,
    /// The folder served at `/`.
    pub public_dir: PathBuf,
    /// `host:port` of the Redis whose stream is the shared event log; `None`: the log is local.
    pub redis: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            tick: Duration::from_millis(1000),
            heartbeat: Duration::from_secs(15),
            max_clients: 10_000,
            max_in_flight: 1000,
            allowed_hosts: Vec::new(),
            retry: Duration::from_millis(3000),
            head_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            writers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            // Found wherever `cargo run` is started from; `PUBLIC_DIR` points elsewhere, for a
            // binary moved away from its source tree.
            public_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/public")),
            redis: None,
        }
    }
}

impl Config {
    /// Reads the variables listed at the top of this file through `var` (`std::env::var` in
    /// `main`). The error is one line that names the variable.
    pub fn from_env(var: impl Fn(&str) -> Result<String, VarError>) -> Result<Config, String> {
        let get = |name: &str| match var(name) {
            Ok(value) => Ok(Some(value)),
            Err(VarError::NotPresent) => Ok(None),
            Err(VarError::NotUnicode(_)) => Err(format!("{name} is not valid UTF-8")),
        };
        let number = |name: &str, default: u64, min: u64, max: u64| -> Result<u64, String> {
            let Some(text) = get(name)? else {
                return Ok(default);
            };
            match text.trim().parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(format!(
                    "{name}={text:?} is invalid: expected a whole number from {min} to {max}"
                )),
            }
        };
        let port = number("PORT", 3000, 0, 65_535)? as u16;
        let host = get("HOST")?.unwrap_or_else(|| String::from("127.0.0.1"));
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                format!(
                    "HOST={host:?} is invalid: expected an IP address or a host name that resolves"
                )
            })?;
        let public_dir = match get("PUBLIC_DIR")? {
            None => Config::default().public_dir,
            Some(dir) if Path::new(&dir).is_dir() => PathBuf::from(dir),
            Some(dir) => {
                return Err(format!(
                    "PUBLIC_DIR={dir:?} is invalid: expected a folder that exists"
                ));
            }
        };
        let mut allowed_hosts = Vec::new();
        for name in get("ALLOWED_HOSTS")?.unwrap_or_default().split(',') {
            let name = name.trim();
            let is_name = name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !is_name {
                return Err(format!(
                    "ALLOWED_HOSTS: {name:?} is invalid: expected host names without ports, separated by commas"
                ));
            }
            if !name.is_empty() {
                allowed_hosts.push(name.to_string());
            }
        }
        let redis = match get("REDIS_URL")? {
            Some(url) => Some(crate::redis_log::parse_url(&url)?),
            None => None,
        };
        Ok(Config {
            addr,
            public_dir,
            redis,
            allowed_hosts,
            tick: Duration::from_millis(number("TICK_MS", 1000, 1, 86_400_000)?),
            heartbeat: Duration::from_millis(number("HEARTBEAT_MS", 15_000, 1, 86_400_000)?),
            retry: Duration::from_millis(number("RETRY_MS", 3000, 0, 600_000)?),
            max_clients: number("MAX_CLIENTS", 10_000, 1, 1_000_000)? as usize,
            max_in_flight: number("MAX_IN_FLIGHT", 1000, 1, 100_000)? as usize,
            ..Config::default()
        })
    }
}

/// A warning for start-up when the open-file limit (`ulimit -n`) is below what the settings can
/// need: every stream and every connection in flight is a socket, and a socket is an open file.
/// Past the limit, `accept` fails and new connections wait in the kernel's queue.
pub fn file_limit_warning(config: &Config, limit: u64) -> Option<String> {
    // The listener, stdin/out/err, the files `public/` is read from: a few to spare.
    let need = (config.max_clients + config.max_in_flight) as u64 + 16;
    (limit < need).then(|| {
        format!(
            "warning: MAX_CLIENTS={} and MAX_IN_FLIGHT={} need up to {need} open files, but this \
             process may open {limit} (ulimit -n); raise it with `ulimit -n {need}` before \
             starting, or lower MAX_CLIENTS",
            config.max_clients, config.max_in_flight
        )
    })
}

/// This process's soft limit on open files, as Linux reports it in `/proc/self/limits`. `None`
/// where there is no such file (other systems) or it cannot be read: then nothing is said.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_env(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
                .ok_or(VarError::NotPresent)
        })
    }

    #[test]
    fn allowed_hosts_are_names() {
        let config = from(&[("ALLOWED_HOSTS", "sse.example.com, Example.org,")]).unwrap();
        assert_eq!(config.allowed_hosts, ["sse.example.com", "Example.org"]);
        assert!(from(&[]).unwrap().allowed_hosts.is_empty());
        for bad in ["sse.example.com:443", "a b", "http://x"] {
            let error = from(&[("ALLOWED_HOSTS", bad)]).unwrap_err();
            assert!(error.starts_with("ALLOWED_HOSTS: "), "{bad:?}: {error}");
        }
    }

    #[test]
    fn a_file_limit_too_low_for_the_settings_is_said() {
        let config = from(&[("MAX_CLIENTS", "10000"), ("MAX_IN_FLIGHT", "1000")]).unwrap();
        assert_eq!(file_limit_warning(&config, 11_016), None);
        let warning = file_limit_warning(&config, 1024).unwrap();
        assert!(warning.contains("need up to 11016 open files, but this process may open 1024"));
        // Linux writes the soft limit in the fourth column; this machine has some limit.
        if cfg!(target_os = "linux") {
            assert!(open_files_limit().is_some_and(|n| n > 0));
        }
    }

    #[test]
    fn defaults() {
        let config = from(&[]).unwrap();
        assert_eq!(config.addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(config.tick, Duration::from_secs(1));
        assert_eq!(config.heartbeat, Duration::from_secs(15));
        assert_eq!(config.retry, Duration::from_secs(3));
        assert_eq!(config.max_clients, 10_000);
    }

    #[test]
    fn reads_every_variable() {
        let config = from(&[
            ("PORT", "8080"),
            ("HOST", "::1"),
            ("TICK_MS", "250"),
            ("HEARTBEAT_MS", "2000"),
            ("RETRY_MS", "0"),
            ("MAX_CLIENTS", "5"),
        ])
        .unwrap();
        assert_eq!(config.heartbeat, Duration::from_secs(2));
        assert_eq!(config.retry, Duration::ZERO);
        assert_eq!(config.addr, "[::1]:8080".parse().unwrap());
        assert_eq!(config.tick, Duration::from_millis(250));
        assert_eq!(config.max_clients, 5);
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(
            from(&[("PORT", "http")]).unwrap_err(),
            r#"PORT="http" is invalid: expected a whole number from 0 to 65535"#
        );
        assert!(from(&[("PORT", "70000")]).unwrap_err().starts_with("PORT="));
        assert!(
            from(&[("TICK_MS", "0")])
                .unwrap_err()
                .starts_with("TICK_MS=")
        );
        assert!(
            from(&[("TICK_MS", "-5")])
                .unwrap_err()
                .starts_with("TICK_MS=")
        );
        assert_eq!(
            from(&[("RETRY_MS", "600001")]).unwrap_err(),
            r#"RETRY_MS="600001" is invalid: expected a whole number from 0 to 600000"#
        );
        assert_eq!(
            from(&[("HEARTBEAT_MS", "0")]).unwrap_err(),
            r#"HEARTBEAT_MS="0" is invalid: expected a whole number from 1 to 86400000"#
        );
        assert!(
            from(&[("MAX_CLIENTS", "")])
                .unwrap_err()
                .starts_with("MAX_CLIENTS=")
        );
        assert!(
            from(&[("HOST", "not a host")])
                .unwrap_err()
                .starts_with("HOST=")
        );
    }

    #[test]
    fn public_dir_must_be_a_folder_that_exists() {
        let here = env!("CARGO_MANIFEST_DIR");
        let config = from(&[("PUBLIC_DIR", here)]).unwrap();
        assert_eq!(config.public_dir, PathBuf::from(here));
        let missing = format!("{here}/no-such-folder");
        assert_eq!(
            from(&[("PUBLIC_DIR", &missing)]).unwrap_err(),
            format!("PUBLIC_DIR={missing:?} is invalid: expected a folder that exists")
        );
        let file = format!("{here}/Cargo.toml");
        assert!(
            from(&[("PUBLIC_DIR", &file)]).is_err(),
            "a file is not a folder"
        );
    }

    #[test]
    fn redis_url_is_read_as_host_and_port() {
        assert_eq!(from(&[]).unwrap().redis, None);
        let config = from(&[("REDIS_URL", "redis://127.0.0.1:6380")]).unwrap();
        assert_eq!(config.redis.as_deref(), Some("127.0.0.1:6380"));
        assert!(
            from(&[("REDIS_URL", "127.0.0.1:6380")])
                .unwrap_err()
                .starts_with("REDIS_URL=")
        );
    }

    #[test]
    fn non_unicode_value_is_an_error() {
        let err = Config::from_env(|_| Err(VarError::NotUnicode("x".into()))).unwrap_err();
        assert_eq!(err, "PORT is not valid UTF-8");
    }
}
