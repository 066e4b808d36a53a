//! The control socket behind `oqs-edge status`, `reload`, `diff`, `confirm`, `history` and
//! `rollback`.
//!
//! One request per connection: the client writes a command word (with its argument, if any)
//! and a newline (`status`, `reload`, `reload-confirm 300`, `rollback 7`, ...), the daemon
//! answers with one JSON document and closes. The socket is mode 0660, so the operators' group
//! can read the state without being root; the peer's uid is taken from the socket (SO_PEERCRED)
//! for the history and the log.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// How long a client may take to send its command, and the daemon to answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("another oqs-edge is already running (it answers on {0})")]
    AlreadyRunning(PathBuf),
    #[error("cannot create the control socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("oqs-edge is not running (nothing answers on {path}: {source})")]
    NotRunning {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the daemon on {path} did not answer properly: {message}")]
    BadAnswer { path: PathBuf, message: String },
}

/// What a client may ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Status,
    Reload,
    /// Reload, and roll back unless confirmed within this many seconds.
    ReloadConfirm(u64),
    /// Keep the pending change.
    Confirm,
    /// The applied configs.
    History,
    /// Apply an earlier config from the history (the one before the running one if `None`).
    Rollback(Option<u64>),
    /// The running config's path and text, for `oqs-edge diff`.
    Running,
}

impl Request {
    fn word(self) -> String {
        match self {
            Request::Status => "status".to_owned(),
            Request::Reload => "reload".to_owned(),
            Request::ReloadConfirm(secs) => format!("reload-confirm {secs}"),
            Request::Confirm => "confirm".to_owned(),
            Request::History => "history".to_owned(),
            Request::Rollback(None) => "rollback".to_owned(),
            Request::Rollback(Some(id)) => format!("rollback {id}"),
            Request::Running => "running".to_owned(),
        }
    }

    fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        let word = words.next()?;
        let arg = words.next().map(str::parse::<u64>);
        if words.next().is_some() {
            return None;
        }
        match (word, arg) {
            ("status", None) => Some(Request::Status),
            ("reload", None) => Some(Request::Reload),
            ("reload-confirm", Some(Ok(secs))) => Some(Request::ReloadConfirm(secs)),
            ("confirm", None) => Some(Request::Confirm),
            ("history", None) => Some(Request::History),
            ("rollback", None) => Some(Request::Rollback(None)),
            ("rollback", Some(Ok(id))) => Some(Request::Rollback(Some(id))),
            ("running", None) => Some(Request::Running),
            _ => None,
        }
    }
}

/// The daemon's side: a listening socket.
pub struct Server {
    path: PathBuf,
    /// Requests read by the accept task. A channel, so that [`Server::next`] is cancel-safe:
    /// the supervisor polls it in a `select!` beside ticks and probes, and a connection
    /// accepted but not yet read must not be dropped when another branch wins (the client
    /// would see a broken pipe).
    requests: tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Pending>>,
    acceptor: tokio::task::JoinHandle<()>,
}

/// A client connection whose command has been read; answer it with [`Pending::answer`].
pub struct Pending {
    pub request: Request,
    /// The uid of the process that asked (SO_PEERCRED), when the kernel says.
    pub peer_uid: Option<u32>,
    stream: UnixStream,
}

impl Server {
    /// Listen on `path`, replacing a stale socket file but never a live daemon's.
    pub async fn bind(path: &Path) -> Result<Self, ControlError> {
        let bind_error = |source| ControlError::Bind {
            path: path.to_owned(),
            source,
        };
        if path.exists() {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ControlError::AlreadyRunning(path.to_owned()));
            }
            std::fs::remove_file(path).map_err(bind_error)?;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(bind_error)?;
        }
        let listener = UnixListener::bind(path).map_err(bind_error)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(bind_error)?;
        let (sender, requests) = tokio::sync::mpsc::channel(16);
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                // Each client is read on its own task: a slow one holds up no other.
                let sender = sender.clone();
                tokio::spawn(async move {
                    if let Some(pending) = read_request(stream).await {
                        let _ = sender.send(pending).await;
                    }
                });
            }
        });
        Ok(Server {
            path: path.to_owned(),
            requests: tokio::sync::Mutex::new(requests),
            acceptor,
        })
    }

    /// The next well-formed request (cancel-safe). Malformed or slow clients are dropped by
    /// the accept task.
    pub async fn next(&self) -> Pending {
        match self.requests.lock().await.recv().await {
            Some(pending) => pending,
            None => std::future::pending().await,
        }
    }
}

/// A client's one-line command; a malformed one is answered with an error and dropped.
async fn read_request(stream: UnixStream) -> Option<Pending> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let read = tokio::time::timeout(IO_TIMEOUT, (&mut reader).take(64).read_line(&mut line)).await;
    let mut stream = reader.into_inner();
    match (read, Request::parse(&line)) {
        (Ok(Ok(_)), Some(request)) => {
            let peer_uid = stream.peer_cred().ok().map(|c| c.uid());
            Some(Pending {
                request,
                peer_uid,
                stream,
            })
        }
        _ => {
            let _ = stream.write_all(b"{\"error\":\"unknown request\"}\n").await;
            None
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.acceptor.abort();
        // `status` then says "not running" instead of finding a dead socket.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Pending {
    pub async fn answer<T: Serialize>(mut self, answer: &T) {
        let mut body = serde_json::to_vec(answer).unwrap_or_default();
        body.push(b'\n');
        let _ = tokio::time::timeout(IO_TIMEOUT, self.stream.write_all(&body)).await;
    }
}

/// The client's side: send one request and read the JSON answer.
pub async fn ask<T: for<'de> Deserialize<'de>>(
    path: &Path,
    request: Request,
    timeout: Duration,
) -> Result<T, ControlError> {
    let not_running = |source| ControlError::NotRunning {
        path: path.to_owned(),
        source,
    };
    let bad = |message: String| ControlError::BadAnswer {
        path: path.to_owned(),
        message,
    };
    let mut stream = UnixStream::connect(path).await.map_err(not_running)?;
    let exchange = async {
        stream
            .write_all(format!("{}\n", request.word()).as_bytes())
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| bad(format!("no answer within {}s", timeout.as_secs())))?
        .map_err(|e| bad(e.to_string()))?;
    serde_json::from_slice(&answer).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Local users (issue 22): the socket is the owner's and its group's only, and a second
    /// daemon cannot take a live one's place.
    #[test]
    fn the_socket_is_0660_and_a_live_one_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/control.sock");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let _server = Server::bind(&path).await.unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o660);
            assert!(matches!(
                Server::bind(&path).await,
                Err(ControlError::AlreadyRunning(_))
            ));
        });
    }

    /// The supervisor polls `next` beside ticks: a `next` that loses a `select!` must not
    /// lose the client it had accepted.
    #[test]
    fn a_request_survives_next_being_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let server = Server::bind(&path).await.unwrap();
            // A client that connects, then takes a moment before it writes its command.
            let client = tokio::spawn({
                let path = path.clone();
                async move {
                    let mut stream = UnixStream::connect(&path).await?;
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    stream.write_all(b"status\n").await?;
                    let mut answer = Vec::new();
                    stream.read_to_end(&mut answer).await?;
                    Ok::<_, std::io::Error>(answer)
                }
            });
            // `next` loses a `select!` every millisecond meanwhile.
            let mut got = None;
            for _ in 0..100 {
                tokio::select! {
                    pending = server.next() => { got = Some(pending); break }
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
            }
            let pending = match got {
                Some(pending) => pending,
                None => tokio::time::timeout(Duration::from_secs(5), server.next())
                    .await
                    .expect("the accepted client was lost"),
            };
            assert_eq!(pending.request, Request::Status);
            pending.answer(&serde_json::json!({"ok": true})).await;
            let answer = client.await.unwrap().expect("the client got its answer");
            let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
            assert_eq!(answer["ok"], true);
        });
    }

    #[test]
    fn requests_round_trip_through_their_words() {
        for request in [
            Request::Status,
            Request::Reload,
            Request::ReloadConfirm(300),
            Request::Confirm,
            Request::History,
            Request::Rollback(None),
            Request::Rollback(Some(7)),
            Request::Running,
        ] {
            assert_eq!(
                Request::parse(&format!("{}\n", request.word())),
                Some(request)
            );
        }
        for bad in [
            "",
            "reload 5",
            "reload-confirm",
            "reload-confirm x",
            "rollback 1 2",
            "nope",
        ] {
            assert_eq!(Request::parse(bad), None, "{bad:?}");
        }
    }
}
