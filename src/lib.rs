//! A Server-Sent Events server, written to be read top to bottom.
//!
//! The modules in reading order:
//! - [`config`]: the settings, and reading them from the environment.
//! - [`http`]: reading and parsing a request head, writing a response, the error-to-status table.
//! - [`event`]: framing one event as the bytes of `text/event-stream`.
//! - [`clients`]: the `Mutex`-guarded client list, the event ids, the replay buffer, broadcasting.
//! - [`ticker`]: the thread that feeds the list: the time, the client count, heartbeats.
//! - [`static_files`]: the page and its assets from `public/`.
//! - [`server`]: the accept loop, one thread per connection, routing, and the stream handshake.
//! - [`lab`]: query-string switches that make `/events` misbehave on purpose, for experiments.

pub mod clients;
pub mod config;
pub mod event;
pub mod http;
pub mod lab;
pub mod server;
pub mod static_files;
pub mod ticker;

pub use config::Config;
pub use server::serve;
