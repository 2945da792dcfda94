//! `plexus daemon --docker-plugin NAME`: serves Docker's plugin protocol
//! ([`plexus::docker`]) over HTTP on `/run/docker/plugins/NAME.sock`, where
//! dockerd discovers plugins by name.
//!
//! Decisions:
//! - HTTP/1.1 through `tiny_http` on a listener we bind ourselves (the same
//!   stale-socket check and 0660 mode as the API socket), so only root (and
//!   the socket's group) can drive it.
//! - One short-lived thread per call, at most [`MAX_CALLS`] at once (one more
//!   is answered 503 with an `Err`): a slow or stuck call never holds up the
//!   others, and no caller can take every thread. The controller serializes
//!   what must be serialized.
//! - A call that panics (a bug) answers 500 with an `Err`; the plugin keeps
//!   serving.
//! - Every call is logged at debug level with its body; a failed call at
//!   warn level, a successful change at info level.
//! - Stop: the listener is unblocked, in-flight calls finish, and the socket
//!   is removed if it is still ours.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};

use anyhow::{Context, bail};
use plexus::Controller;
use plexus::docker::{CONTENT_TYPE, MAX_BODY, Plugin, PluginError, error_body};

/// Where dockerd looks for plugin sockets (fixed: it ignores `--exec-root`).
pub const PLUGIN_DIR: &str = "/run/docker/plugins";
/// Calls served at once.
pub const MAX_CALLS: usize = 16;

/// A running plugin endpoint.
pub struct PluginServer {
    server: Arc<tiny_http::Server>,
    socket: PathBuf,
    bound: Option<(u64, u64)>,
    thread: Option<JoinHandle<()>>,
}

/// A plugin name as Docker takes it: lowercase letters, digits, `.`, `_`, `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

/// The socket of plugin `name`.
pub fn socket_path(name: &str) -> PathBuf {
    Path::new(PLUGIN_DIR).join(format!("{name}.sock"))
}

impl std::fmt::Debug for PluginServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginServer")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl PluginServer {
    /// Binds `/run/docker/plugins/NAME.sock` and serves it on a thread.
    pub fn start(name: &str, ctrl: Controller) -> anyhow::Result<PluginServer> {
        if !valid_name(name) {
            bail!("Docker plugin name {name:?}: use 1-64 of [a-z0-9._-], starting with a letter or digit");
        }
        if ctrl.config().mode == plexus::mode::Mode::Rootless {
            bail!("the Docker plugin needs a rootful daemon (Docker moves the endpoints' interfaces itself)");
        }
        let socket = socket_path(name);
        crate::socket::check_path(&socket)?;
        let listener = crate::socket::bind(&socket)?;
        let bound = std::fs::metadata(&socket).map(|m| (m.dev(), m.ino())).ok();
        let server = Arc::new(
            tiny_http::Server::from_listener(listener, None)
                .map_err(|e| anyhow::anyhow!("serving {}: {e}", socket.display()))?,
        );
        let plugin = Plugin::new(ctrl);
        let thread = {
            let server = Arc::clone(&server);
            thread::Builder::new()
                .name("docker-plugin".into())
                .spawn(move || serve(&server, &plugin))
                .context("starting the Docker plugin thread")?
        };
        log::info!("Docker plugin {name} on {}", socket.display());
        Ok(PluginServer {
            server,
            socket,
            bound,
            thread: Some(thread),
        })
    }

    /// The socket it serves.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops serving, waits for calls in flight, removes the socket.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if std::fs::metadata(&self.socket).map(|m| (m.dev(), m.ino())).ok() == self.bound {
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}

impl Drop for PluginServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Accepts calls until unblocked; each on its own thread.
fn serve(server: &tiny_http::Server, plugin: &Plugin) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut calls = Vec::new();
    for request in server.incoming_requests() {
        calls.retain(|c: &JoinHandle<()>| !c.is_finished());
        if in_flight.load(Ordering::SeqCst) >= MAX_CALLS {
            let e = PluginError::Unsupported {
                call: request.url().trim_start_matches('/').to_owned(),
                why: format!("{MAX_CALLS} calls are in flight; try again"),
            };
            respond(request, 503, &error_body(&e));
            continue;
        }
        in_flight.fetch_add(1, Ordering::SeqCst);
        let (plugin, count) = (plugin.clone(), Arc::clone(&in_flight));
        match thread::Builder::new().name("docker-call".into()).spawn(move || {
            call(request, &plugin);
            count.fetch_sub(1, Ordering::SeqCst);
        }) {
            Ok(t) => calls.push(t),
            Err(e) => {
                in_flight.fetch_sub(1, Ordering::SeqCst);
                log::warn!("docker plugin: cannot start a call thread: {e}");
            }
        }
    }
    for c in calls {
        let _ = c.join();
    }
}

/// Answers one call.
fn call(mut request: tiny_http::Request, plugin: &Plugin) {
    let method = request.url().trim_start_matches('/').to_owned();
    if *request.method() != tiny_http::Method::Post {
        let e = PluginError::BadRequest {
            call: method,
            why: format!("{} instead of POST", request.method()),
        };
        return respond(request, 405, &error_body(&e));
    }
    let mut body = Vec::new();
    let read = request
        .as_reader()
        .take(u64::try_from(MAX_BODY).unwrap_or(u64::MAX) + 1)
        .read_to_end(&mut body);
    if let Err(e) = read {
        log::warn!("docker plugin: {method}: reading the body: {e}");
        return;
    }
    if body.len() > MAX_BODY {
        let e = PluginError::BadRequest {
            call: method,
            why: format!("body larger than {MAX_BODY} bytes"),
        };
        return respond(request, 413, &error_body(&e));
    }
    log::debug!("docker plugin: {method} {}", String::from_utf8_lossy(&body));
    // A bug in a call answers an Err and leaves the plugin serving, as the
    // API does.
    let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plugin.answer(&method, &body)));
    let (status, answer) = answered.unwrap_or_else(|_| {
        (
            500,
            serde_json::json!({ "Err": format!("{method}: internal error (a bug in Plexus; see the daemon's log)") }),
        )
    });
    if status == 200 {
        let changes = !method.ends_with("GetCapabilities")
            && !method.ends_with("GetDefaultAddressSpaces")
            && !method.ends_with("EndpointOperInfo")
            && method != "Plugin.Activate";
        if changes {
            log::info!("docker plugin: {method}");
        }
        log::debug!("docker plugin: {method} -> {answer}");
    } else {
        log::warn!("docker plugin: {}", answer["Err"].as_str().unwrap_or("error"));
    }
    respond(request, status, &answer);
}

fn respond(request: tiny_http::Request, status: u16, body: &serde_json::Value) {
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], CONTENT_TYPE.as_bytes())
        .expect("a constant header is valid");
    let response = tiny_http::Response::from_string(body.to_string())
        .with_status_code(status)
        .with_header(header);
    let _ = request.respond(response);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_follow_docker() {
        for ok in ["plexus", "px-t1a2b", "a.b_c"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "Plexus", "-x", "a/b", "a b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(socket_path("px").to_str(), Some("/run/docker/plugins/px.sock"));
    }
}
