//! Several servers on one shared log, in one command:
//!
//! ```sh
//! redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no
//! cargo run --example cluster -- --ports 8081,8082
//! ```
//!
//! Starts the server binary once per port, each with `PORT` and `REDIS_URL` set (`REDIS_URL` as
//! given, else `redis://127.0.0.1:6379`), prints each one's log lines behind its port, and stops
//! them all when one exits. Ctrl-C stops them too, without any code here: the terminal sends
//! SIGINT to every process of its foreground process group, and the children are in ours.

use std::env;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::Duration;

const USAGE: &str = "usage: cluster [--ports 8081,8082]";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let ports = match args.as_slice() {
        [] => Ok(vec![8081, 8082]),
        [flag, list] if flag == "--ports" => parse_ports(list),
        _ => Err(String::from("unexpected arguments")),
    };
    let ports = match ports {
        Ok(ports) => ports,
        Err(message) => {
            eprintln!("cluster: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let redis_url =
        env::var("REDIS_URL").unwrap_or_else(|_| String::from("redis://127.0.0.1:6379"));
    let server = match server_binary() {
        Ok(path) => path,
        Err(message) => {
            eprintln!("cluster: {message}");
            return ExitCode::from(2);
        }
    };
    let mut children = Vec::new();
    for port in &ports {
        let spawned = Command::new(&server)
            .env("PORT", port.to_string())
            .env("REDIS_URL", &redis_url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                eprintln!("cluster: cannot start {}: {e}", server.display());
                stop(&mut children);
                return ExitCode::from(2);
            }
        };
        prefix_lines(child.stdout.take(), *port);
        prefix_lines(child.stderr.take(), *port);
        children.push((*port, child));
    }
    eprintln!(
        "cluster: {} servers on {redis_url}: {}; Ctrl-C stops them all",
        ports.len(),
        ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}/"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    // One server gone (a port taken, Redis URL refused, a crash): the others stop too, so the
    // cluster never goes on half there without saying so.
    loop {
        for (port, child) in &mut children {
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("cluster: the server on {port} exited ({status}); stopping the others");
                let port = *port;
                children.retain(|(p, _)| *p != port);
                stop(&mut children);
                return ExitCode::from(1);
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// `8081,8082` to ports; each from 1 to 65535, no two alike.
fn parse_ports(list: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for text in list.split(',') {
        match text.trim().parse::<u16>() {
            Ok(port) if port > 0 && !ports.contains(&port) => ports.push(port),
            _ => {
                return Err(format!(
                    "--ports {list:?}: expected distinct ports from 1 to 65535, comma-separated"
                ));
            }
        }
    }
    Ok(ports)
}

/// The server binary. `cargo run --example cluster` builds this example, not the server, and
/// `env!("CARGO_BIN_EXE_...")` is given only to integration tests; so we ask Cargo to build it,
/// with the profile we were built with, and find it where Cargo puts binaries: next to the
/// `examples/` folder this example runs from (`target/debug/examples/cluster` ->
/// `target/debug/sse-server`). `$CARGO` is the Cargo that ran us, when it did.
fn server_binary() -> Result<PathBuf, String> {
    let exe = env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(|examples| examples.parent())
        .ok_or("this program is not inside a Cargo target folder")?;
    let release = profile_dir
        .file_name()
        .is_some_and(|name| name == "release");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--bin", "sse-server"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        build.arg("--release");
    }
    match build.status() {
        Ok(status) if status.success() => {}
        Ok(status) => return Err(format!("cargo build --bin sse-server failed ({status})")),
        Err(e) => return Err(format!("cannot run cargo: {e}")),
    }
    let server = profile_dir.join(format!("sse-server{}", env::consts::EXE_SUFFIX));
    if !server.exists() {
        return Err(format!("no server binary at {}", server.display()));
    }
    Ok(server)
}

/// Prints each line the child writes, behind its port, from a thread of its own.
fn prefix_lines(output: Option<impl Read + Send + 'static>, port: u16) {
    let Some(output) = output else { return };
    thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            match line {
                Ok(line) => eprintln!("[{port}] {line}"),
                Err(_) => break,
            }
        }
    });
}

/// Stops the servers still running (SIGKILL; they hold nothing that needs saving).
fn stop(children: &mut Vec<(u16, Child)>) {
    for (_, child) in children.iter_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
    children.clear();
}
