//! The whole idea of Server-Sent Events in one screen, before the real server.
//!
//! `cargo run --example minimal` (port 3001, or `PORT`), then `curl -N localhost:3001/`, or in a
//! browser's console on any page of http://localhost:3001,
//! `new EventSource("/").onmessage = e => console.log(e.data)`.
//!
//! Accept a connection, read its request head (and ignore it: every path is the stream), write
//! the head of a `text/event-stream` response, then one event a second: a `data:` line and a
//! blank line. When a write fails the browser has gone, and that connection's thread ends. The
//! Rust Book's web server (chapter 21) starts from a loop like this one, too.
//!
//! What the real server (`cargo run`) adds, and why, file by file, is in the README: ids and a
//! replay for a browser that reconnects, a cap on clients, heartbeats, a client too slow to keep
//! up, and answers to bad input.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| String::from("3001"));
    let listener = match TcpListener::bind(format!("127.0.0.1:{port}")) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(2);
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("listening on http://{addr}"),
        Err(e) => eprintln!("listening, but the address is unknown: {e}"),
    }
    for connection in listener.incoming() {
        match connection {
            // One thread per connection, so one slow browser never holds up another.
            Ok(stream) => {
                thread::spawn(move || stream_to(stream));
            }
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
}

fn stream_to(mut stream: TcpStream) {
    // The request head ends at the first empty line. Nothing in it matters here.
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    while matches!(reader.read_line(&mut line), Ok(n) if n > 0) && !line.trim_end().is_empty() {
        line.clear();
    }
    // `200` and this type are what a browser's EventSource checks (§9.2.2). No Content-Length:
    // the body runs until the connection closes.
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n";
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    for n in 1.. {
        // One event: a `data:` line, then a blank line that dispatches it (§9.2.6).
        let event = format!("data: tick {n}\n\n");
        if stream.write_all(event.as_bytes()).is_err() {
            return; // the browser went away
        }
        thread::sleep(Duration::from_secs(1));
    }
}
