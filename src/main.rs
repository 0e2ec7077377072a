//! `cargo run`: read the configuration, bind, say where, and serve.

use sse_server::{Config, config};
use std::net::TcpListener;
use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match Config::from_env(|name| std::env::var(name)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    if let Some(warning) =
        config::open_files_limit().and_then(|limit| config::file_limit_warning(&config, limit))
    {
        eprintln!("{warning}");
    }
    let listener = match TcpListener::bind(config.addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "cannot listen on {}: {e} (is another server running? try PORT=3001)",
                config.addr
            );
            return ExitCode::from(2);
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("listening on http://{addr}"),
        Err(e) => eprintln!("listening, but the address is unknown: {e}"),
    }
    sse_server::serve(listener, config)
}
