//! A Server-Sent Events server, written to be read top to bottom.
//!
//! The modules in reading order: the protocol first, then the plain HTTP around it.
//! - [`event`]: the bytes of one event in the `text/event-stream` format.
//! - [`server`]: start at `stream_events`, the stream handshake step by step; then the accept loop,
//!   one thread per connection, and routing.
//! - [`event_log`]: the recent events, in order, with their ids: what every client is sent, and
//!   the replay for one that reconnects.
//! - [`broadcast`]: the `Mutex`-guarded client list, each client a position in the log, and the
//!   writer threads that bring every client up to the end of it.
//! - [`ticker`]: the thread that feeds the log: the time, the client count, heartbeats.
//! - [`redis_log`]: with `REDIS_URL`, one Redis stream as the log of several servers; [`resp`]:
//!   the client of the Redis protocol it speaks.
//! - [`lab`]: query-string switches that make `/events` misbehave on purpose, for experiments.
//! - Plain HTTP, to skim: [`http`] (reading and parsing a request head, writing a response, the
//!   error-to-status table) and [`static_files`] (the page and its assets from `public/`).
//! - [`config`]: the settings, and reading them from the environment.
//! - [`dates`]: the time as RFC 3339 for the ticker and as HTTP's `Date` header.
//! - [`client`]: the other half, what a browser's `EventSource` does with the bytes: the parser
//!   and the connection, with its reconnects.

pub mod broadcast;
pub mod client;
pub mod config;
pub mod dates;
pub mod event;
pub mod event_log;
pub mod http;
pub mod lab;
pub mod redis_log;
pub mod resp;
pub mod server;
pub mod static_files;
pub mod ticker;

pub use config::Config;
pub use server::serve;
