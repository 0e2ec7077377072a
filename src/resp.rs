//! A client of the Redis protocol, RESP2: just enough to send a command and read its reply.
//!
//! A command goes out as an array of bulk strings: `*3\r\n$4\r\nXADD\r\n$...`. A reply is one
//! value, told apart by its first byte: `+` simple string, `-` error, `:` integer, `$` bulk string
//! (`$-1` is null), `*` array of values (`*-1` is null). Every line ends in `\r\n`.
//! See <https://redis.io/docs/latest/develop/reference/protocol-spec/>. RESP3, pipelining, AUTH
//! and TLS are left out: the server speaks to one Redis on a trusted network.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::time::Duration;

/// One reply from Redis.
#[derive(Debug, PartialEq)]
pub enum Reply {
    Simple(String),
    /// `-ERR ...`: Redis understood the command and refused it.
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    Array(Vec<Reply>),
    /// `$-1` or `*-1`: no value (`XREAD` that timed out, for example).
    Nil,
}

/// The longest bulk string we keep (our events are 64 KiB at most). A longer one, which another
/// program could have written, is read past without being kept: see
/// [`TooLong`](Unreadable::TooLong).
pub const MAX_BULK: usize = 1 << 20;
/// The longest bulk string Redis sends (its `proto-max-bulk-len`, 512 MiB): a header that claims
/// more is not Redis talking.
const REDIS_MAX_BULK: usize = 512 << 20;
/// How deep arrays may nest: an `XREAD` reply is 5 deep (streams, stream, entries, entry, fields).
const MAX_DEPTH: usize = 8;

/// Why [`parse`] could not give a reply.
#[derive(Debug, PartialEq)]
pub enum Unreadable {
    /// Not RESP2: the connection should be closed.
    Invalid(String),
    /// A bulk string over [`MAX_BULK`]: its header `$<len>\r\n` is at `header` in the buffer, and
    /// `len` bytes and a `\r\n` follow it, some perhaps still on the socket.
    TooLong { header: Range<usize>, len: usize },
}

impl From<&str> for Unreadable {
    fn from(text: &str) -> Unreadable {
        Unreadable::Invalid(text.to_string())
    }
}

/// Reads the reply at the start of `buf`. `Ok(None)`: not all there yet, read more. `Ok(Some)`:
/// the reply and how many bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, Unreadable> {
    parse_at(buf, 0)
}

fn parse_at(buf: &[u8], depth: usize) -> Result<Option<(Reply, usize)>, Unreadable> {
    if depth > MAX_DEPTH {
        return Err(Unreadable::Invalid(format!(
            "arrays nested more than {MAX_DEPTH} deep"
        )));
    }
    // The first line: a type byte, then text up to `\r\n`.
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    if end == 0 {
        return Err("a reply line has no type byte".into());
    }
    let line = std::str::from_utf8(&buf[1..end]).map_err(|_| "a reply line is not UTF-8")?;
    let mut used = end + 2;
    let number = || -> Result<i64, Unreadable> {
        line.parse()
            .map_err(|_| Unreadable::Invalid(format!("expected a number, got {line:?}")))
    };
    let reply = match buf[0] {
        b'+' => Reply::Simple(line.to_string()),
        b'-' => Reply::Error(line.to_string()),
        b':' => Reply::Integer(number()?),
        b'$' | b'*' if number()? == -1 => Reply::Nil,
        b'$' => {
            let len = usize::try_from(number()?)
                .ok()
                .filter(|len| *len <= REDIS_MAX_BULK)
                .ok_or_else(|| Unreadable::Invalid(format!("bulk length {line} out of range")))?;
            if len > MAX_BULK {
                return Err(Unreadable::TooLong {
                    header: 0..used,
                    len,
                });
            }
            if buf.len() < used + len + 2 {
                return Ok(None);
            }
            if &buf[used + len..used + len + 2] != b"\r\n" {
                return Err("a bulk string does not end in \\r\\n".into());
            }
            let bytes = buf[used..used + len].to_vec();
            used += len + 2;
            Reply::Bulk(bytes)
        }
        b'*' => {
            let len = usize::try_from(number()?)
                .map_err(|_| Unreadable::Invalid(format!("array length {line} out of range")))?;
            // Room for what a real reply holds, not for what the header claims: the loop below
            // stops at the end of the bytes that arrived.
            let mut items = Vec::with_capacity(len.min(1024));
            for _ in 0..len {
                // A string too long to keep, inside this array: where it is in our `buf`.
                let inside = |e| match e {
                    Unreadable::TooLong { header, len } => Unreadable::TooLong {
                        header: header.start + used..header.end + used,
                        len,
                    },
                    e => e,
                };
                let Some((item, n)) = parse_at(&buf[used..], depth + 1).map_err(inside)? else {
                    return Ok(None);
                };
                items.push(item);
                used += n;
            }
            Reply::Array(items)
        }
        other => {
            let why = format!("unknown reply type {:?}", other as char);
            return Err(Unreadable::Invalid(why));
        }
    };
    Ok(Some((reply, used)))
}

/// The bytes of a command: an array of bulk strings.
pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend(format!("${}\r\n", arg.len()).into_bytes());
        out.extend(arg.as_bytes());
        out.extend(b"\r\n");
    }
    out
}

/// One connection to Redis, used by one thread at a time: send a command, wait for its reply.
pub struct Connection {
    stream: TcpStream,
    /// Bytes read but not yet parsed: a reply can arrive in pieces, or with the next one.
    buf: Vec<u8>,
}

impl Connection {
    /// Connects to `addr` (`host:port`). `timeout` bounds the connect and every read and write:
    /// a Redis that stops answering becomes an error, never a thread stuck for good.
    pub fn open(addr: &str, timeout: Duration) -> io::Result<Connection> {
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            format!("{addr} resolves to nothing"),
        );
        for ip in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&ip, timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(timeout))?;
                    stream.set_write_timeout(Some(timeout))?;
                    stream.set_nodelay(true)?;
                    let buf = Vec::new();
                    return Ok(Connection { stream, buf });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Sends one command and reads its reply. A Redis error (`-ERR ...`) is an `Err` too, with
    /// Redis's text: most callers here have no use for a refused command.
    pub fn command(&mut self, args: &[&str]) -> io::Result<Reply> {
        self.send(args)?;
        match self.reply()? {
            Reply::Error(text) => Err(io::Error::other(format!("Redis: {text}"))),
            reply => Ok(reply),
        }
    }

    /// Sends one command. A failure here means Redis never got all of it, so never ran it.
    pub fn send(&mut self, args: &[&str]) -> io::Result<()> {
        self.stream.write_all(&encode(args))
    }

    /// Reads the reply to the command sent, `Reply::Error` included. A failure here leaves it
    /// unknown whether Redis ran the command: it may have, and the answer was lost on the way.
    pub fn reply(&mut self) -> io::Result<Reply> {
        loop {
            match parse(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(Unreadable::TooLong { header, len }) => {
                    self.read_past(header, len)?;
                    continue;
                }
                Err(Unreadable::Invalid(why)) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, why));
                }
            }
            // Not all there yet: read more onto the end, then parse again from the first byte:
            // simple, at the cost of going over a large reply's start once per read. Each read
            // offers room for at least as much as is already here, so a large reply comes in
            // large reads, not 16 KiB at a time. The room is on the heap: connection threads run
            // on small stacks.
            let have = self.buf.len();
            self.buf.resize(have + have.max(16 * 1024), 0);
            let read = self.stream.read(&mut self.buf[have..]);
            self.buf.truncate(have + *read.as_ref().unwrap_or(&0));
            // A read with a timeout is not restarted after the process was stopped and continued
            // (Ctrl-Z, then fg; see signal(7)): it fails with EINTR, and only needs doing again.
            if read
                .as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::Interrupted)
            {
                continue;
            }
            if read? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "Redis closed the connection",
                ));
            }
        }
    }

    /// Reads past a bulk string too long to keep, whose header is at `header` in `buf`, and leaves
    /// a null in its place: `$<len>\r\n<bytes>\r\n` becomes `$-1\r\n`, with the string's own
    /// `\r\n` (still to be checked by `parse`). The reply stays whole, with no value where the
    /// string was. What has not arrived yet is read through a small buffer and dropped.
    fn read_past(&mut self, header: Range<usize>, len: usize) -> io::Result<()> {
        let mut left = len;
        let here = (self.buf.len() - header.end).min(left);
        self.buf.drain(header.end..header.end + here);
        self.buf.splice(header, *b"$-1");
        left -= here;
        let mut scratch = vec![0; 64 * 1024];
        while left > 0 {
            let room = left.min(scratch.len());
            let n = match self.stream.read(&mut scratch[..room]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue, // as in `reply`
                read => read?,
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "Redis closed the connection",
                ));
            }
            left -= n;
        }
        Ok(())
    }

    /// Whether this connection can take the next command: open, with nothing waiting to be read.
    /// Found without waiting, by a peek. Redis closes a connection left idle for its `timeout`
    /// setting (0, never, by default), and a proxy or NAT between may too; a command written to
    /// such a connection is lost, yet its reply only reads as "closed" after the write succeeded.
    pub fn is_usable(&self) -> bool {
        let peeked = self
            .stream
            .set_nonblocking(true)
            .and_then(|()| self.stream.peek(&mut [0; 1]));
        let nothing_waiting = matches!(&peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        self.stream.set_nonblocking(false).is_ok() && nothing_waiting
    }

    /// Changes the read timeout: `XREAD ... BLOCK 5000` needs longer than 5 s for its answer.
    pub fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(text: &str) -> Reply {
        let (reply, used) = parse(text.as_bytes()).unwrap().unwrap();
        assert_eq!(used, text.len(), "all of {text:?} used");
        reply
    }

    fn bulk(text: &str) -> Reply {
        Reply::Bulk(text.as_bytes().to_vec())
    }

    #[test]
    fn a_command_is_an_array_of_bulk_strings() {
        assert_eq!(encode(&["GET", "key"]), b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n");
        assert_eq!(
            encode(&["SET", "k", "é"]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\xc3\xa9\r\n"
        );
    }

    #[test]
    fn simple_strings_errors_and_integers() {
        assert_eq!(whole("+PONG\r\n"), Reply::Simple("PONG".into()));
        assert_eq!(whole("-ERR no\r\n"), Reply::Error("ERR no".into()));
        assert_eq!(whole(":-42\r\n"), Reply::Integer(-42));
    }

    #[test]
    fn bulk_strings_may_hold_crlf_and_be_empty() {
        assert_eq!(whole("$4\r\na\r\nb\r\n"), bulk("a\r\nb"));
        assert_eq!(whole("$0\r\n\r\n"), bulk(""));
    }

    #[test]
    fn null_bulk_and_null_array() {
        assert_eq!(whole("$-1\r\n"), Reply::Nil);
        assert_eq!(whole("*-1\r\n"), Reply::Nil);
    }

    #[test]
    fn nested_arrays() {
        // The shape of an XREAD reply: [[stream, [[id, [field, value]]]]].
        let text = "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nk\r\n$1\r\nv\r\n";
        let entry = Reply::Array(vec![bulk("1-0"), Reply::Array(vec![bulk("k"), bulk("v")])]);
        let stream = Reply::Array(vec![bulk("s"), Reply::Array(vec![entry])]);
        assert_eq!(whole(text), Reply::Array(vec![stream]));
        assert_eq!(whole("*0\r\n"), Reply::Array(vec![]));
    }

    #[test]
    fn a_reply_split_anywhere_asks_for_more() {
        let text = "*2\r\n$5\r\nhello\r\n:7\r\n";
        for cut in 0..text.len() {
            assert_eq!(parse(&text.as_bytes()[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse(text.as_bytes()).unwrap().is_some());
    }

    #[test]
    fn a_string_too_long_to_keep_is_found_by_its_header() {
        let too_long = format!("*2\r\n:1\r\n${}\r\nabc", MAX_BULK + 1);
        assert_eq!(
            parse(too_long.as_bytes()),
            Err(Unreadable::TooLong {
                header: 8..18,
                len: MAX_BULK + 1
            })
        );
        // More than Redis ever sends is not Redis.
        let too_much = format!("${}\r\n", (512 << 20) + 1);
        assert!(matches!(
            parse(too_much.as_bytes()),
            Err(Unreadable::Invalid(_))
        ));
        // A header that claims many elements costs nothing until they arrive.
        assert_eq!(parse(b"*999999999\r\n:1\r\n"), Ok(None));
    }

    #[test]
    fn a_reply_followed_by_the_next_one_uses_only_its_bytes() {
        let (reply, used) = parse(b":1\r\n:2\r\n").unwrap().unwrap();
        assert_eq!((reply, used), (Reply::Integer(1), 4));
    }

    /// A one-shot server on loopback that reads one command, then writes `pieces` with a pause
    /// between each; returns the address to connect to.
    fn server_sending(pieces: &[&str]) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let pieces: Vec<String> = pieces.iter().map(|p| p.to_string()).collect();
        std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let _ = socket.read(&mut [0; 1024]);
            for piece in pieces {
                socket.write_all(piece.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        addr
    }

    #[test]
    fn a_reply_that_arrives_in_pieces_is_read_whole() {
        let addr = server_sending(&["*2\r\n$5\r\nhel", "lo\r\n:", "7\r\n"]);
        let mut redis = Connection::open(&addr, Duration::from_secs(5)).unwrap();
        let reply = redis.command(&["ECHO", "hello"]).unwrap();
        assert_eq!(reply, Reply::Array(vec![bulk("hello"), Reply::Integer(7)]));
    }

    #[test]
    fn a_string_too_long_to_keep_is_read_past_and_left_as_null() {
        // Over a megabyte of `x`, in pieces, between two values that are kept.
        let long = "x".repeat(MAX_BULK + 5);
        let header = format!("*3\r\n$3\r\none\r\n${}\r\n", MAX_BULK + 5);
        let addr = server_sending(&[
            &header,
            &long[..1000],
            &long[1000..],
            "\r\n$3\r\ntwo\r\n:7\r\n",
        ]);
        let mut redis = Connection::open(&addr, Duration::from_secs(5)).unwrap();
        let reply = redis.command(&["XRANGE", "s", "-", "+"]).unwrap();
        assert_eq!(
            reply,
            Reply::Array(vec![bulk("one"), Reply::Nil, bulk("two")])
        );
        // The reply after it is read as it came.
        assert_eq!(redis.command(&["PING"]).unwrap(), Reply::Integer(7));
        // A string that does not end where its length says is not RESP2.
        let header = format!("*1\r\n${}\r\n", MAX_BULK + 1);
        let addr = server_sending(&[&header, &long[..MAX_BULK + 1], "xx\r\n"]);
        let mut redis = Connection::open(&addr, Duration::from_secs(5)).unwrap();
        let error = redis.command(&["GET", "k"]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    }

    #[test]
    fn bytes_of_the_next_reply_wait_for_the_next_command() {
        let addr = server_sending(&[":1\r\n:2\r\n"]);
        let mut redis = Connection::open(&addr, Duration::from_secs(5)).unwrap();
        assert_eq!(redis.command(&["INCR", "k"]).unwrap(), Reply::Integer(1));
        assert_eq!(redis.command(&["INCR", "k"]).unwrap(), Reply::Integer(2));
    }

    #[test]
    fn a_redis_error_and_a_closed_connection_are_errors() {
        let addr = server_sending(&["-ERR unknown command\r\n"]);
        let mut redis = Connection::open(&addr, Duration::from_secs(5)).unwrap();
        let error = redis.command(&["NOPE"]).unwrap_err();
        assert_eq!(error.to_string(), "Redis: ERR unknown command");
        let addr = server_sending(&["$5\r\nhel"]);
        let mut redis = Connection::open(&addr, Duration::from_secs(5)).unwrap();
        let error = redis.command(&["GET", "k"]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bad in [
            "?x\r\n",
            ":12a\r\n",
            "$-2\r\n",
            "$abc\r\n",
            "$2\r\nabcd\r\n",
            "*-5\r\n",
            "\r\n",
            "*1\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad.as_bytes()), Err(Unreadable::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(parse(b"+\xff\r\n").is_err(), "not UTF-8");
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2) + ":1\r\n";
        assert!(parse(deep.as_bytes()).is_err(), "too deep");
    }
}
