//! The CLI's side of the JSON API: a connection to the daemon that sends
//! [`Request`]s and returns their results.
//!
//! Decisions:
//! - Failing to reach the daemon (connect fails, or the connection drops before a
//!   response) is its own error type, [`Unreachable`], so `main` can exit with 125
//!   and a hint; a refusal by the daemon is an [`plexus::api::ApiError`] (exit 1).
//! - Blocking I/O, no timeouts: the daemon answers every request; a hung daemon
//!   is visible as a hung CLI, which Ctrl-C ends.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use plexus::api::{Request, Response};

/// The daemon could not be reached (exit code 125).
#[derive(Debug)]
pub struct Unreachable {
    /// The socket tried.
    pub socket: PathBuf,
    /// What went wrong.
    pub reason: String,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot reach the daemon: {}; is `plexus daemon` running? (socket {}; set PLEXUS_SOCKET or --socket)",
            self.reason,
            self.socket.display()
        )
    }
}

impl std::error::Error for Unreachable {}

/// `io::Error` text without the "(os error N)" suffix.
pub fn describe(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_owned(),
        None => e.to_string(),
    }
}

/// A connection to the daemon.
#[derive(Debug)]
pub struct Client {
    socket: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the daemon's socket.
    pub fn connect(socket: &Path) -> Result<Client, Unreachable> {
        let unreachable = |e: std::io::Error| Unreachable {
            socket: socket.to_owned(),
            reason: describe(&e),
        };
        let writer = UnixStream::connect(socket).map_err(unreachable)?;
        let reader = BufReader::new(writer.try_clone().map_err(unreachable)?);
        Ok(Client {
            socket: socket.to_owned(),
            reader,
            writer,
        })
    }

    /// Sends one request and returns its result; a refusal is an [`plexus::api::ApiError`]
    /// inside the `anyhow::Error`.
    pub fn call(&mut self, req: &Request) -> anyhow::Result<Value> {
        let lost = |reason: String| Unreachable {
            socket: self.socket.clone(),
            reason,
        };
        let mut line = serde_json::to_vec(req)?;
        line.push(b'\n');
        // A daemon that refuses the connection (too many clients) says why and
        // closes it, maybe before the request is written: the answer is still
        // there to read.
        let sent = self.writer.write_all(&line);
        let mut answer = String::new();
        let read = self.reader.read_line(&mut answer);
        let n = match (read, sent) {
            (Ok(n), _) if n > 0 => n,
            (_, Err(e)) => return Err(lost(format!("sending the request: {}", describe(&e))).into()),
            (Err(e), Ok(())) => return Err(lost(format!("reading the response: {}", describe(&e))).into()),
            (Ok(n), Ok(())) => n,
        };
        if n == 0 {
            return Err(lost("the daemon closed the connection without answering".into()).into());
        }
        let resp: Response = serde_json::from_str(&answer)
            .map_err(|e| anyhow::anyhow!("the daemon sent an unreadable response ({e}): {}", answer.trim_end()))?;
        resp.into_result().map_err(anyhow::Error::from)
    }

    /// What follows the answer on the connection (a capture's stream).
    pub fn into_reader(self) -> BufReader<UnixStream> {
        self.reader
    }

    /// Like [`Client::call`], decoding the result as `T`.
    pub fn call_as<T: DeserializeOwned>(&mut self, req: &Request) -> anyhow::Result<T> {
        let v = self.call(req)?;
        serde_json::from_value(v).map_err(|e| anyhow::anyhow!("unexpected result for {}: {e}", req.op()))
    }
}
