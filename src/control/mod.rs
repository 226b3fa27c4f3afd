//! The control socket, `DATA/control.sock`: how `letterbox backup`,
//! `verify` and `export` reach a running server, which holds the database
//! open. Only the server's own user and root may use it: the socket file is
//! mode 0600, and every connection's peer credentials are checked too.
//!
//! The protocol is one request line, then lines back until the last:
//! `backup<TAB>DEST`, `verify`, `export<TAB>USER<TAB>OUTDIR` (paths
//! absolute, since the server's working directory is not the caller's);
//! answers are `. text` lines for a person, then `ok text` or `err text`.
//! The work runs on a blocking thread, from one snapshot: the server goes on
//! serving, and the writer never waits for it. `import<TAB>USER` is the one
//! request with more to send: the messages to import follow it ([`import`]).

pub mod backup;
pub mod import;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use smol::net::unix::UnixStream;

use crate::services::Shared;
use crate::store::Store;

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// The longest request line taken.
const MAX_REQUEST: usize = 8192;

/// What a caller asks the running server for. After `Import`'s request
/// line, the items to import follow ([`import`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Backup {
        dest: PathBuf,
    },
    Verify,
    Export {
        user: String,
        out: PathBuf,
    },
    Import {
        user: String,
    },
    /// Every user's quota usage and limits, for `letterbox user list`.
    Usage,
}

impl Request {
    fn line(&self) -> String {
        match self {
            Request::Backup { dest } => format!("backup\t{}\n", dest.display()),
            Request::Verify => "verify\n".into(),
            Request::Export { user, out } => format!("export\t{user}\t{}\n", out.display()),
            Request::Usage => "usage\n".into(),
            Request::Import { user } => format!("import\t{user}\n"),
        }
    }

    fn parse(line: &str) -> Result<Request, String> {
        let fields: Vec<&str> = line.trim_end_matches(['\r', '\n']).split('\t').collect();
        let absolute = |p: &str| {
            let path = PathBuf::from(p);
            if path.is_absolute() {
                Ok(path)
            } else {
                Err(format!("{p} is not an absolute path"))
            }
        };
        match fields.as_slice() {
            ["backup", dest] => Ok(Request::Backup {
                dest: absolute(dest)?,
            }),
            ["verify"] => Ok(Request::Verify),
            ["usage"] => Ok(Request::Usage),
            ["export", user, out] => Ok(Request::Export {
                user: user.to_ascii_lowercase(),
                out: absolute(out)?,
            }),
            ["import", user] => Ok(Request::Import {
                user: user.to_ascii_lowercase(),
            }),
            _ => Err("unknown request".into()),
        }
    }
}

/// Asks a running server; `say` gets each line for a person. None when no
/// server listens on the data directory's control socket (the caller then
/// opens the store itself); otherwise the final answer.
pub fn call(
    data_dir: &Path,
    request: &Request,
    say: &mut dyn FnMut(&str),
) -> Option<Result<String, String>> {
    let mut stream = StdUnixStream::connect(socket_path(data_dir)).ok()?;
    if let Err(e) = stream.write_all(request.line().as_bytes()) {
        return Some(Err(format!("the server's control socket: {e}")));
    }
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => {
                return Some(Err(
                    "the server closed the control socket without an answer".into(),
                ))
            }
            Ok(_) => {}
        }
        let text = line.trim_end_matches('\n');
        if let Some(rest) = text.strip_prefix(". ") {
            say(rest);
        } else if let Some(rest) = text.strip_prefix("ok ") {
            return Some(Ok(rest.to_string()));
        } else if let Some(rest) = text.strip_prefix("err ") {
            return Some(Err(rest.to_string()));
        } else {
            return Some(Err(format!("unexpected answer: {text}")));
        }
    }
}

/// Serves one control connection.
pub async fn serve(shared: Rc<Shared>, stream: UnixStream) {
    if !peer_is_trusted(&stream) {
        log::warn!("control socket: refused a connection from another user");
        let mut stream = stream;
        let _ = stream
            .write_all(b"err only the server's own user and root may use this socket\n")
            .await;
        return;
    }
    let mut reader = AsyncBufReader::new(stream.clone().take(MAX_REQUEST as u64));
    let mut line = String::new();
    let mut stream = stream;
    let read = reader.read_line(&mut line).await;
    if read.is_err() || !line.ends_with('\n') {
        let _ = stream
            .write_all(b"err request line missing or too long\n")
            .await;
        return;
    }
    let request = match Request::parse(&line) {
        Ok(request) => request,
        Err(e) => {
            let _ = stream.write_all(format!("err {e}\n").as_bytes()).await;
            return;
        }
    };
    log::info!("control socket: {request:?}");
    if request == Request::Usage {
        // Small (one read per user), and the limits live in `shared`.
        let last = match usage_lines(&shared) {
            Ok(lines) => {
                let count = lines.len();
                let mut text: String = lines.into_iter().map(|l| format!(". {l}\n")).collect();
                text.push_str(&format!("ok {count} users\n"));
                text
            }
            Err(e) => format!("err {e}\n"),
        };
        let _ = stream.write_all(last.as_bytes()).await;
        return;
    }
    if let Request::Import { user } = &request {
        // The items that follow are read in pieces, each with its own limit.
        reader.get_mut().set_limit(u64::MAX);
        import::serve(shared, reader, stream, user.clone()).await;
        return;
    }
    let (lines, incoming) = smol::channel::unbounded::<String>();
    let store = shared.store.clone();
    let data_dir = shared.config.data_dir.clone();
    let work = crate::services::unblock(move || {
        let mut say = |text: String| {
            let _ = lines.send_blocking(format!(". {text}\n"));
        };
        run(&store, &data_dir, request, &mut say)
    });
    // Forward progress as it comes; the work ends by dropping its sender.
    let forward = async {
        while let Ok(text) = incoming.recv().await {
            if stream.write_all(text.as_bytes()).await.is_err() {
                break;
            }
        }
    };
    let (result, ()) = smol::future::zip(work, forward).await;
    let last = match result {
        Ok(text) => format!("ok {text}\n"),
        Err(e) => {
            log::error!("control socket: {e}");
            format!("err {}\n", e.replace('\n', " "))
        }
    };
    let _ = stream.write_all(last.as_bytes()).await;
}

/// `user list`'s lines from the running server: the limits it applies.
fn usage_lines(shared: &Shared) -> Result<Vec<String>, String> {
    let snapshot = shared.store.snapshot().map_err(|e| e.to_string())?;
    let mut lines = Vec::new();
    for name in shared.user_names() {
        let usage = snapshot.usage(&name).map_err(|e| e.to_string())?;
        let limits = shared.quota_limits(&name);
        lines.push(crate::quota::usage_line(&name, &usage, &limits, "no limit"));
    }
    Ok(lines)
}

/// Does the work of a request against a store, live or opened by the
/// command itself.
pub fn run(
    store: &Store,
    data_dir: &Path,
    request: Request,
    say: &mut dyn FnMut(String),
) -> Result<String, String> {
    let snapshot = store.snapshot().map_err(|e| e.to_string())?;
    match request {
        Request::Backup { dest } => {
            let path = backup::write(&snapshot, data_dir, &dest, say)?;
            Ok(format!("backup written to {}", path.display()))
        }
        Request::Verify => {
            let verified = snapshot
                .verify(&mut |n| say(format!("{n} messages read")))
                .map_err(|e| e.to_string())?;
            report(&verified, say)
        }
        Request::Export { user, out } => {
            let count = crate::cli::export_maildirs(&snapshot, &user, &out)?;
            Ok(format!("exported {count} messages"))
        }
        Request::Usage => Err("usage is answered by the running server only".into()),
        // Its messages stream after the request (import.rs), never through here.
        Request::Import { .. } => Err("an import streams its messages over the socket".into()),
    }
}

/// Says each problem; Ok when there are none.
pub fn report(
    verified: &crate::store::Verified,
    say: &mut dyn FnMut(String),
) -> Result<String, String> {
    for problem in &verified.problems {
        say(format!("{}: {}", problem.place, problem.what));
    }
    let summary = format!(
        "{} mailboxes, {} messages, {} bytes read",
        verified.mailboxes, verified.messages, verified.bytes
    );
    if verified.problems.is_empty() {
        Ok(format!("no problems found ({summary})"))
    } else {
        Err(format!(
            "{} problems found ({summary})",
            verified.problems.len()
        ))
    }
}

/// Whether the process on the other end runs as this server's user or as
/// root (SO_PEERCRED). The socket's mode already says so; this holds even
/// if someone loosens it.
fn peer_is_trusted(stream: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut credentials = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the struct we own.
    let read = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut credentials as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    read == 0 && (credentials.uid == me || credentials.uid == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_refused() {
        for request in [
            Request::Backup {
                dest: "/mnt/usb".into(),
            },
            Request::Verify,
            Request::Usage,
            Request::Export {
                user: "alice".into(),
                out: "/tmp/out dir".into(),
            },
            Request::Import {
                user: "alice".into(),
            },
        ] {
            assert_eq!(Request::parse(&request.line()), Ok(request));
        }
        assert!(Request::parse("backup\trelative/dir\n").is_err());
        assert!(Request::parse("format\t/\n").is_err());
        assert!(Request::parse("verify\textra\n").is_err());
    }
}
